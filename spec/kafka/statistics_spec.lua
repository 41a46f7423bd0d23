-- Statistics and metrics (issue #16, docs/statistics.md): on_stats with
-- librdkafka's statistics decoded by our JSON decoder (checked against
-- lua-cjson and Python's json on the same text), p:metrics() after a real
-- run on the mock cluster, and the hostile cases: a raising on_stats,
-- re-entry from it, close while statistics wait, collection, ref leaks.
local producers = require("producers")
local core = require("producers.core")
local cjson = require("cjson")
local H = require("helpers")
local has_luv, uv = pcall(require, "luv")
local it_luv = has_luv and it or pending

local BUSY = "not allowed from a delivery callback, logger or encoder of the same producer"
local STATS = { ["statistics.interval.ms"] = 20 }

-- Every ref in use (a freed slot holds the number of the next free one).
local function all_refs()
  return H.registry_refs(function(v) return type(v) ~= "number" end)
end

-- Polls p until cond() holds (10 s at most).
local function poll_until(p, cond)
  return H.wait_until(cond, 10, function() p:poll(0.05) end)
end

-- "path<TAB>kind<TAB>value" lines of every leaf of a decoded document,
-- sorted; kind is "n" (number), "s" (string) or "b" (boolean).
local function leaves(t, prefix, out)
  out = out or {}
  for k, v in pairs(t) do
    local path = (prefix or "") .. "/" .. tostring(k)
    if type(v) == "table" then
      leaves(v, path, out)
    else
      local kind = type(v) == "number" and "n" or type(v) == "string" and "s" or "b"
      out[#out + 1] = { path, kind, v }
    end
  end
  if not prefix then table.sort(out, function(a, b) return a[1] < b[1] end) end
  return out
end

-- The leaves of the JSON text as Python's json module reads it.
local PY_LEAVES = [[
import json, sys
def walk(v, path, out):
    if isinstance(v, dict):
        for k, x in v.items(): walk(x, path + "/" + k, out)
    elif isinstance(v, list):
        for i, x in enumerate(v): walk(x, path + "/" + str(i + 1), out)
    elif isinstance(v, bool): out.append((path, "b", "true" if v else "false"))
    elif isinstance(v, (int, float)): out.append((path, "n", repr(v)))
    else: out.append((path, "s", v))
out = []
walk(json.load(open(sys.argv[1])), "", out)
for p, k, v in sorted(out): print(p + "\t" + k + "\t" + v)
]]

local function python_leaves(json)
  local doc, script = os.tmpname(), os.tmpname()
  local f = assert(io.open(doc, "wb")); f:write(json); f:close()
  f = assert(io.open(script, "wb")); f:write(PY_LEAVES); f:close()
  -- without the sanitizers preloaded (ASan build): Python is not ours
  local out, ok = H.sh("env -u LD_PRELOAD python3 " .. script .. " " .. doc)
  os.remove(doc); os.remove(script)
  assert(ok, out)
  local list = {}
  for path, kind, value in out:gmatch("([^\t\n]*)\t(%a)\t([^\n]*)\n") do
    if kind == "n" then value = tonumber(value)
    elseif kind == "b" then value = value == "true" end
    list[#list + 1] = { path, kind, value }
  end
  return list
end

describe("statistics", function()
  local m
  setup(function() m = producers.mock_cluster(3) end)
  teardown(function() m:close() end)

  describe("on_stats", function()
    it("must be a function", function()
      local ok, err = pcall(producers.kafka.new, { bootstrap_servers = m:bootstraps(), on_stats = 1 })
      assert.is_false(ok)
      assert.matches("producers.kafka.new: option 'on_stats' must be a function, got number", err, 1, true)
    end)

    it("receives the statistics decoded and as JSON; they decode as lua-cjson and Python read them", function()
      local got = {}
      local p = H.producer(m, { config = STATS, on_stats = function(stats, json)
        got[#got + 1] = { stats, json }
      end })
      assert.is_true(p:produce(H.topic("stats"), "k", "v"))
      assert.is_true(p:flush(10))
      assert.is_true(poll_until(p, function() return #got >= 2 end))
      p:close()
      local stats, json = got[#got][1], got[#got][2]
      assert.equal("producer", stats.type)
      assert.equal("table", type(stats.brokers))
      assert.same(cjson.decode(json), stats)
      assert.same(python_leaves(json), leaves(stats))
      if math.type then                   -- Lua 5.3+: integers stay integers
        assert.equal("integer", math.type(stats.ts))
        assert.equal("integer", math.type(stats.msg_cnt))
      end
    end)

    it("is never called without statistics.interval.ms, and new warns so", function()
      local log, called = H.recorder(), false
      local p = H.producer(m, { logger = log.fn, on_stats = function() called = true end })
      assert.matches('warn on_stats is never called: statistics are off '
        .. '(set config["statistics.interval.ms"])', log.text(), 1, true)
      assert.is_true(p:produce(H.topic("nostats"), "k", "v"))
      assert.is_true(p:flush(10))
      p:poll(0.1)
      p:close()
      assert.is_false(called)
    end)

    it("raises out of poll with a traceback; the next poll goes on serving", function()
      local calls, delivered = 0, 0
      local p = H.producer(m, { config = STATS,
        on_delivery = function() delivered = delivered + 1 end,
        on_stats = function() calls = calls + 1; if calls == 1 then error("stats boom") end end })
      assert.is_true(p:produce(H.topic("raise"), "k", "v"))
      local ok, err
      assert.is_true(H.wait_until(function()
        ok, err = pcall(p.poll, p, 0.05)
        return not ok
      end, 10))
      assert.matches("stats boom", err, 1, true)
      assert.matches("stack traceback:", err, 1, true)
      assert.is_true(poll_until(p, function() return calls >= 3 and delivered == 1 end))
      assert.is_true(p:flush(10))
      p:close()
      assert.equal(1, delivered)
    end)

    it("raises in reports(): the error comes back as its second value", function()
      local calls = 0
      local p = H.producer(m, { config = STATS, serve_on_produce = false, on_stats = function()
        calls = calls + 1
        if calls == 1 then error("stats in reports") end
      end })
      assert.is_true(p:produce(H.topic("values"), "k", "v"))
      local taken, list, err = 0, nil, nil
      assert.is_true(H.wait_until(function()
        list, err = p:reports()
        taken = taken + #list
        return err ~= nil
      end, 10))
      assert.matches("stats in reports", err, 1, true)
      assert.matches("stack traceback:", err, 1, true)
      assert.is_true(H.wait_until(function()
        taken = taken + #p:reports()
        return taken == 1 and calls >= 2
      end, 10))
      p:close()
    end)

    it("cannot close or flush the producer; metrics, poll and produce are allowed", function()
      local results, depth, topic = nil, 0, H.topic("reenter")
      local p
      p = H.producer(m, { config = STATS, on_stats = function()
        depth = depth + 1
        if not results and depth == 1 then
          results = {
            close = { pcall(p.close, p, 0) },
            flush = { pcall(p.flush, p, 0) },
            metrics = { pcall(p.metrics, p) },
            poll = { pcall(p.poll, p, 0) },
            produce = { pcall(p.produce, p, topic, "k", "from on_stats") },
          }
        end
        depth = depth - 1
      end })
      assert.is_true(poll_until(p, function() return results ~= nil end))
      assert.is_false(results.close[1])
      assert.matches("close: " .. BUSY, results.close[2], 1, true)
      assert.is_false(results.flush[1])
      assert.matches("flush: " .. BUSY, results.flush[2], 1, true)
      assert.is_true(results.metrics[1])
      assert.equal("table", type(results.metrics[2].latency))
      assert.same({ true, 0 }, results.poll)       -- the outer call serves
      assert.same({ true, true }, results.produce)
      assert.is_true(p:flush(10))
      assert.same({ messages = 1, bytes = 1 + #"from on_stats" }, p:metrics().delivered)
      p:close()
      assert.is_true(p:is_closed())
    end)

    it_luv("runs in close while statistics wait; none runs after", function()
      local calls = 0
      local p = H.producer(m, { on_stats = function() calls = calls + 1 end,
        config = { ["statistics.interval.ms"] = 20, log_level = 0 } })
      -- the queue's descriptor turns readable: with librdkafka's logs off
      -- and nothing produced, the event is statistics
      local poller, guard = uv.new_poll(p:event_fd()), uv.new_timer()
      local function finish() poller:stop(); poller:close(); guard:stop(); guard:close() end
      poller:start("r", finish)
      guard:start(10000, 0, finish)
      uv.run()
      assert.equal(0, calls)
      p:close()
      assert.is_true(calls >= 1)
      local after = calls
      collectgarbage()
      assert.equal(after, calls)
      assert.has_error(function() p:metrics() end, "producer is closed")
    end)

    it("leaves no registry ref after close, nor after collection without close", function()
      local before = all_refs()
      local p = H.producer(m, { config = STATS, logger = function() end,
                                on_stats = function() end, on_delivery = function() end })
      assert.is_true(p:produce(H.topic("refs"), "k", "v"))
      p:poll(0.1)
      p:close()
      p = nil
      collectgarbage()
      assert.equal(before, all_refs())

      local q = H.producer(m, { config = STATS, on_stats = function() end, gc_flush_timeout = 0.1 })
      assert.is_true(q:produce(H.topic("refs"), "k", "v"))
      q = nil
      collectgarbage()
      collectgarbage()
      assert.equal(before, all_refs())
    end)
  end)

  describe("metrics", function()
    it("counts the messages and bytes delivered, their latency and the brokers", function()
      local p = H.producer(m, { config = { ["statistics.interval.ms"] = 500 } })
      local topic, n, bytes = H.topic("metrics"), 200, 0
      for i = 1, n do
        local key, value = "key" .. i, string.rep("v", i)
        bytes = bytes + #key + #value
        assert.is_true(p:produce(topic, key, value))
      end
      assert.is_true(p:produce(topic, nil, string.rep("L", 5000)))   -- lent, no key
      n, bytes = n + 1, bytes + 5000
      assert.is_true(p:flush(10))
      local mt = p:metrics()
      assert.same({ messages = n, bytes = bytes }, mt.delivered)
      assert.same({ messages = 0, bytes = 0 }, mt.queued)
      assert.same({ messages = 0, bytes = 0 }, mt.failed)
      assert.equal(0.5, mt.latency.interval)
      -- the window holding the reports closes within the interval
      assert.is_true(poll_until(p, function() mt = p:metrics(); return mt.latency.count > 0 end))
      assert.is_true(mt.latency.count <= n)
      assert.is_true(mt.latency.avg > 0 and mt.latency.avg < 10)
      assert.is_true(mt.latency.p99 > 0 and mt.latency.p99 < 10)
      assert.is_true(poll_until(p, function() return #p:metrics().brokers == 3 end))
      local ids, up = {}, 0
      for _, b in ipairs(p:metrics().brokers) do
        ids[#ids + 1] = b.id
        assert.matches("^127%.0%.0%.1:%d+/%d$", b.name)
        assert.equal("string", type(b.state))
        assert.equal("number", type(b.rtt.avg))
        assert.equal("number", type(b.rtt.p99))
        if b.state == "UP" then up = up + 1 end
      end
      assert.same({ 1, 2, 3 }, ids)
      assert.is_true(up >= 1)
      p:close()
    end)

    it("counts what is queued and what failed, without statistics; brokers are empty", function()
      local p = producers.kafka.new{ bootstrap_servers = "127.0.0.1:1", logger = function() end,
                                     config = { ["message.timeout.ms"] = 100 } }
      assert.is_true(p:produce("t", "kk", "vvv"))
      assert.is_true(p:produce("t", nil, "v"))
      local mt = p:metrics()
      assert.same({ messages = 2, bytes = 6 }, mt.queued)
      assert.same({}, mt.brokers)
      assert.same({ count = 0, interval = 5 }, mt.latency)
      assert.is_true(poll_until(p, function() return p:queue_length() == 0 end))
      mt = p:metrics()
      assert.same({ messages = 2, bytes = 6 }, mt.failed)
      assert.same({ messages = 0, bytes = 0 }, mt.queued)
      assert.same({ messages = 0, bytes = 0 }, mt.delivered)
      p:close()
    end)

    it("keeps stats() as it was", function()
      local p = H.producer(m)
      assert.is_true(p:produce(H.topic("keep"), "k", "v"))
      assert.is_true(p:flush(10))
      assert.same({ delivered = 1, failed = 0, queued = 0 }, p:stats())
      p:close()
    end)
  end)

  describe("core.json_decode (internal)", function()
    it("decodes what lua-cjson decodes, alike", function()
      for _, text in ipairs{
        '{"a":1,"b":[true,false,{"c":"d"}],"e":-0.5,"f":1e3,"g":"","h":{}}',
        '[0,-1,12345678901,1.5E-7,"\\"\\\\\\/\\b\\f\\n\\r\\t"]',
        ' \t\r\n[ 1 , [ ] , { } ] \n',
        '"caf\\u00e9 \\u20ac \\ud83d\\ude00"',
      } do
        assert.same(cjson.decode(text), core.json_decode(text))
      end
    end)

    it("keeps integers that fit as integers, others as floats", function()
      if not math.type then return end      -- Lua 5.1, LuaJIT: numbers only
      local t = core.json_decode('[9223372036854775807,-9223372036854775808,9223372036854775808,1.0,1e2]')
      assert.equal(math.maxinteger, t[1])
      assert.equal("integer", math.type(t[1]))
      assert.equal(math.mininteger, t[2])
      assert.equal("integer", math.type(t[2]))
      assert.equal("float", math.type(t[3]))
      assert.equal("float", math.type(t[4]))
      assert.equal("float", math.type(t[5]))
    end)

    it("decodes surrogate pairs into UTF-8, null as nil", function()
      assert.equal("\240\159\152\128", core.json_decode('"\\uD83D\\uDE00"'))
      assert.same({ a = 1 }, core.json_decode('{"a":1,"b":null}'))
      assert.same({ [1] = 1, [3] = 3 }, core.json_decode('[1,null,3]'))
    end)

    it("refuses malformed text, naming what and where", function()
      local cases = {
        { "", "json: unexpected end of input at byte 1" },
        { "[1,", "json: unexpected end of input at byte 4" },
        { "[1 2]", "json: expected ',' or ']' at byte 4" },
        { '{"a" 1}', "json: expected ':' at byte 6" },
        { "{a:1}", "json: expected a string key at byte 2" },
        { '{"a":1,}', "json: expected a string key at byte 8" },
        { "[1,]", "json: unexpected character at byte 4" },
        { "01", "json: unexpected text after the value at byte 2" },
        { "-", "json: bad number at byte 2" },
        { "1.", "json: bad number at byte 3" },
        { "1e+", "json: bad number at byte 4" },
        { "0x10", "json: unexpected text after the value at byte 2" },
        { "tru", "json: unexpected character at byte 1" },
        { "nul", "json: unexpected character at byte 1" },
        { '"abc', "json: unterminated string at byte 5" },
        { '"a\\x"', "json: bad escape at byte 4" },
        { '"\\u12G4"', "json: bad \\u escape at byte 4" },
        { '"\\ud83d"', "json: lone high surrogate at byte 8" },
        { '"\\ud83d\\u0041"', "json: lone high surrogate at byte 14" },
        { '"\\ude00"', "json: lone low surrogate at byte 8" },
        { '"a\nb"', "json: control character in string at byte 3" },
        { "[1] [2]", "json: unexpected text after the value at byte 5" },
        { "'a'", "json: unexpected character at byte 1" },
        { string.rep("1", 65), "json: number too long at byte 66" },
        { string.rep("[", 65) .. string.rep("]", 65), "json: nested too deep at byte 65" },
      }
      for _, c in ipairs(cases) do
        local value, err = core.json_decode(c[1])
        assert.is_nil(value, c[1])
        assert.equal(c[2], err, c[1])
      end
      assert.same(core.json_decode(string.rep("[", 64) .. string.rep("]", 64)),
                  cjson.decode(string.rep("[", 64) .. string.rep("]", 64)))
    end)
  end)
end)
