-- The reliability guarantees (README, "Reliability"): hostile scripts that
-- re-enter the API from metamethods, finalizers, callbacks and loggers,
-- numbers out of range, and close at every moment. Each case failed before
-- the fix it names (issue #12's list).
local producers = require("producers")
local cjson = require("cjson")
local H = require("helpers")
local has_luv, uv = pcall(require, "luv")
local system = require("system")

local on_collect = require("support.finalizer")   -- an object whose finalizer calls fn

-- Every ref in use (a freed slot holds the number of the next free one).
local function all_refs()
  return H.registry_refs(function(v) return type(v) ~= "number" end)
end

local BUSY = "not allowed from a delivery callback, logger or encoder of the same producer"

describe("reliability", function()
  local m
  setup(function() m = producers.mock_cluster(3) end)
  teardown(function() m:close() end)

  describe("produce", function()
    it("reads opts raw: an __index that closes the producer is never called", function()
      local p = H.producer(m)
      local called = false
      local opts = setmetatable({}, { __index = function() called = true; p:close(0) end })
      assert.is_true(p:produce(H.topic("raw"), "k", { a = 1 }, opts))
      assert.is_false(called)
      assert.is_false(p:is_closed())
      assert.is_true(p:flush(10))
      p:close()
    end)

    it("refuses close from the encoder and from a finalizer run inside it (#1)", function()
      local p, results = nil, {}
      p = H.producer(m, { json = function(v)
        results[#results + 1] = { pcall(p.close, p, 0) }
        local trap = on_collect(function() results[#results + 1] = { pcall(p.close, p, 0) } end)
        trap = nil
        collectgarbage()
        return cjson.encode(v)
      end })
      local topic = H.topic("enc")
      assert.is_true(p:produce(topic, "k", { a = 1 }))
      assert.is_true(p:flush(10))
      assert.equal(2, #results)
      for _, r in ipairs(results) do
        assert.is_false(r[1])
        assert.matches("close: " .. BUSY, r[2], 1, true)
      end
      assert.is_false(p:is_closed())
      p:close()
      local records = H.kcat_read(m:bootstraps(), topic)
      assert.equal(1, #records)
      assert.same({ a = 1 }, cjson.decode(records[1].value))
    end)

    it("raises 'producer is closed' when a finalizer closes it while produce reads its arguments", function()
      -- in a child interpreter, the collector at its busiest; on LuaJIT the
      -- per-message callback's debug.getinfo allocates inside produce, so
      -- finalizers run there. Before the fix the host crashed (closed
      -- under produce) or, on LuaJIT, close stayed refused for good.
      local out, ok = H.run_lua([[
        local producers = require("producers")
        local m = producers.mock_cluster(1)
        local on_collect = require("support.finalizer")
        collectgarbage("setpause", 10)
        local inside, hits, closed = false, 0, 0
        local function cb(err, r) end
        for i = 1, 20 do
          local p = producers.kafka.new{ bootstrap_servers = m:bootstraps(), logger = function() end }
          for j = 1, 300 do
            on_collect(function()
              if inside then hits = hits + 1 end
              p:close(0)
            end)
            local opts = { partition = 0, timestamp = 1700000000000 + j, headers = { h = "v" }, on_delivery = cb }
            inside = true
            local ok, err = pcall(p.produce, p, "t", "k" .. j, { n = j }, opts)
            inside = false
            if not ok then
              assert(tostring(err):find("producer is closed", 1, true), err)
              closed = closed + 1
              break
            end
          end
          p:close(0)
        end
        collectgarbage("setpause", 200)
        m:close()
        print(("ok closed=%d inside=%d"):format(closed, hits))
      ]])
      assert.is_true(ok, out)
      assert.matches("ok closed=20 inside=%d+", out)
      if jit then assert.is_truthy(tonumber(out:match("inside=(%d+)")) > 0, out) end
    end)

    it("sends each message's own bytes while finalizers produce during produce (#2)", function()
      local topic = H.topic("uaf")
      local p = H.producer(m, { config = { ["queue.buffering.max.messages"] = 1000000 } })
      local traps = 0
      local n = 3000
      for i = 1, n do
        -- garbage whose finalizer produces another table on the same state
        on_collect(function()
          traps = traps + 1
          p:produce(topic, "trap-" .. traps, { trap = traps, pad = ("t"):rep(traps % 40) })
        end)
        if i % 100 == 0 then collectgarbage("step") end
        local ok, err = p:produce(topic, "msg-" .. i, { id = i, pad = ("m"):rep(i % 60) },
          { headers = { h = tostring(i) }, on_delivery = function(e, r) end })
        assert(ok, err)
      end
      collectgarbage()
      assert.is_true(p:flush(30))
      p:close()
      local records = H.kcat_read(m:bootstraps(), topic)
      assert.equal(n + traps, #records)
      for _, r in ipairs(records) do
        local v = cjson.decode(r.value)
        if r.key:find("^msg%-") then
          assert.equal(("msg-%d"):format(v.id), r.key)
          assert.equal(("m"):rep(v.id % 60), v.pad)
        else
          assert.equal(("trap-%d"):format(v.trap), r.key)
        end
      end
    end)

    it("range-checks partition and timestamp (#7)", function()
      local p = H.producer(m)
      for _, n in ipairs({ 2 ^ 32, 2 ^ 32 + 1, 2 ^ 31, -2 }) do
        assert.has_error(function() p:produce("t", "k", "v", { partition = n }) end,
          ("opts.partition: out of range (-1 to 2147483647), got %d"):format(n))
      end
      assert.has_error(function() p:produce("t", "k", "v", { timestamp = -1 }) end,
        "opts.timestamp: out of range (0 to 9223372036854775807), got -1")
      assert.equal(0, p:queue_length())
      p:close()
    end)

    it("refuses NUL bytes in topic and header names (#13)", function()
      local p = H.producer(m)
      assert.has_error(function() p:produce("a\0b", "k", "v") end, "topic: must not contain a NUL byte")
      assert.has_error(function() p:produce("t", "k", "v", { headers = { ["a\0b"] = "x" } }) end,
        "opts.headers: names must not contain a NUL byte")
      assert.has_error(function() p:produce("t", "k", "v", { headers = { { "a\0b", "x" } } }) end,
        "opts.headers: names must not contain a NUL byte")
      assert.equal(0, p:queue_length())
      p:close()
    end)

    it("returns a refusal even when a report waiting would raise, and serves nothing (#6)", function()
      local called = 0
      local p = H.producer(m, { on_delivery = function() called = called + 1; error("callback boom") end,
                                config = { ["queue.buffering.max.messages"] = 1 } })
      local fd = p:event_fd()
      assert.is_true(p:produce(H.topic("full"), "k", "v"))
      -- let its report arrive (event_fd readable; bounded): unserved, it
      -- keeps the one-message queue full either way
      if has_luv then
        local poller, guard = uv.new_poll(fd), uv.new_timer()
        poller:start("r", function() poller:stop(); guard:stop() end)
        guard:start(10000, 0, function() poller:stop() end)
        uv.run()
        guard:close(); poller:close(); uv.run("nowait")
      end
      local ok, msg, name = p:produce("t", "k", "v")
      assert.same({ nil, "Local: Queue full", "_QUEUE_FULL" }, { ok, msg, name })
      assert.equal(0, called)                   -- the refusal served nothing
      assert.is_true(H.wait_until(function() return not pcall(p.poll, p, 0.2) end, 15))
      assert.equal(1, called)
      assert.equal(0, p:queue_length())
      p:close()
    end)
  end)

  describe("delivery callbacks", function()
    it("may re-produce every message of a large batch at a constant depth (#8)", function()
      local topic, forward = H.topic("batch"), H.topic("forward")
      local n, forwarded, depth = 3000, 0, 0
      local p
      p = H.producer(m, { on_delivery = function(err, r)
        assert(not err, err)
        if r.topic == topic then
          depth = math.max(depth, select(2, debug.traceback():gsub("\n", "")))
          assert(p:produce(forward, r.key, r.value))
          forwarded = forwarded + 1
        end
      end, config = { ["linger.ms"] = 200 } })
      for i = 1, n do assert.is_true(p:produce(topic, "k" .. i, tostring(i))) end
      assert.is_true(p:flush(30))
      assert.equal(n, forwarded)
      assert.is_true(depth < 40, "traceback of " .. depth .. " lines")
      assert.same({ delivered = 2 * n, failed = 0, queued = 0 }, p:stats())
      p:close()
      assert.equal(n, #H.kcat_read(m:bootstraps(), forward))
    end)

    it("may not flush or close; poll serves nothing there", function()
      local p, seen = nil, {}
      p = H.producer(m, { on_delivery = function()
        seen.poll = p:poll(0)
        seen.flush = { pcall(p.flush, p, 1) }
        seen.close = { pcall(p.close, p, 1) }
      end })
      assert.is_true(p:produce(H.topic("nest"), "k", "v"))
      assert.is_true(p:flush(10))
      assert.equal(0, seen.poll)
      assert.is_false(seen.flush[1])
      assert.matches("flush: " .. BUSY, seen.flush[2], 1, true)
      assert.is_false(seen.close[1])
      assert.matches("close: " .. BUSY, seen.close[2], 1, true)
      p:close()
    end)
  end)

  describe("close", function()
    it("refuses a logger that closes while close logs what was lost (#3)", function()
      local p, result
      p = producers.kafka.new{ bootstrap_servers = "127.0.0.1:1",
        logger = function(_, line)
          if line:find("closed with") then result = { pcall(p.close, p, 0) } end
        end }
      assert.is_true(p:produce("t", "k", "v"))
      p:close(0)
      assert.is_true(p:is_closed())
      assert.is_false(result[1])
      assert.matches("close: " .. BUSY, result[2], 1, true)
    end)

    it("gives one report to every message accepted, also those re-produced while closing (#5)", function()
      local accepted, reports, refusals = 0, {}, {}
      local p
      local function send(key)
        local ok, msg, name = p:produce("t", key, "v")
        if ok then accepted = accepted + 1 else refusals[#refusals + 1] = { msg, name } end
      end
      p = producers.kafka.new{ bootstrap_servers = "127.0.0.1:1", logger = function() end,
        config = { ["message.timeout.ms"] = 50 },
        on_delivery = function(err, r)
          reports[#reports + 1] = r.key
          if #reports < 1000 then send(r.key .. "+") end       -- retry, as users do
        end }
      for i = 1, 20 do send("k" .. i) end
      p:close(0.3)
      assert.equal(accepted, #reports)
      local seen = {}
      for _, k in ipairs(reports) do
        assert.is_nil(seen[k], "two reports for " .. k)
        seen[k] = true
      end
      assert.is_true(#refusals > 0)
      assert.same({ "producer is closing", "_DESTROY" }, refusals[1])
    end)

    it("in a <close> scope left by an error, lets that error go on (#16)", function()
      if _VERSION ~= "Lua 5.4" then return pending("Lua 5.4's <close>") end
      local f = load([[
        local producers, raise = ...
        local p <close> = producers.kafka.new{ bootstrap_servers = "127.0.0.1:1",
          logger = function() end, on_delivery = function() error("callback error") end }
        p:produce("t", "k", "v")
        raise()
      ]])
      local ok, err = pcall(f, producers, function() error("scope error", 0) end)
      assert.is_false(ok)
      assert.equal("scope error", err)
    end)
  end)

  describe("delivery.report.only.error", function()
    it("releases every message's state and counts only messages (#4, #15)", function()
      collectgarbage()
      collectgarbage()
      local before, heap = all_refs(), collectgarbage("count")
      local failures = 0
      local p = H.producer(m, { config = { ["delivery.report.only.error"] = true, ["debug"] = "broker" },
        logger = function() end })
      assert.equal(0, p:queue_length())
      local big, topic = ("x"):rep(4096), H.topic("only")
      for i = 1, 2000 do
        assert.is_true(p:produce(topic, "k", big .. i,
          { on_delivery = function(err) if err then failures = failures + 1 end end }))
        if i % 500 == 0 then p:poll(0) end
      end
      assert.is_true(p:flush(30))
      assert.equal(0, p:queue_length())
      assert.equal(0, failures)
      assert.same({ delivered = 2000, failed = 0, queued = 0 }, p:stats())
      p:close()
      p = nil
      collectgarbage()
      collectgarbage()
      assert.equal(before, all_refs())
      assert.is_true(collectgarbage("count") < heap + 1024, "heap grew by "
        .. math.floor(collectgarbage("count") - heap) .. " KiB")
    end)
  end)

  describe("flush", function()
    it("flush(0) serves a report that already waits (#12)", function()
      local served = 0
      local p = H.producer(m, { on_delivery = function() served = served + 1 end })
      assert.is_true(p:produce(H.topic("f0"), "k", "v"))
      assert.is_true(H.wait_until(function() return p:flush(0) == true end, 10))
      assert.equal(1, served)
      p:close()
    end)
  end)

  local it_luv = has_luv and it or pending
  it_luv("event_fd is not readable after a poll that finds nothing (#9)", function()
    -- produce serves no reports: on a loaded machine a report could come
    -- back before produce's own serving, which would take it (and empty
    -- the descriptor) before the wait for readability below
    local p = H.producer(m, { serve_on_produce = false })
    local fd = p:event_fd()
    local function nap() system.sleep(0.001) end
    assert.is_false(H.readable(fd))
    for i = 1, 200 do
      assert.is_true(p:produce("efd", "k", "v"))
      assert.is_true(H.wait_until(function() return H.readable(fd) end, 5, nap), "never readable, round " .. i)
      assert.is_true(H.wait_until(function() p:poll(0) return p:queue_length() == 0 end, 5, nap))
      assert.equal(0, p:poll(0))
      assert.is_false(H.readable(fd), "readable after an empty poll, round " .. i)
    end
    p:close()
  end)

  it_luv("event_fd is not readable after a poll that finds nothing, even when a wait left it readable", function()
    -- the report arrives while poll(5) waits on the emptied queue: the
    -- descriptor is written after poll emptied it, and stays readable
    local p = H.producer(m, { config = { ["linger.ms"] = 100 } })
    local fd = p:event_fd()
    for i = 1, 5 do
      assert.is_true(p:produce("efd", "k", "v"))
      assert.equal(1, p:poll(5))
      assert.is_true(H.readable(fd), "the report's wake-up, round " .. i)
      assert.equal(0, p:poll(0))
      assert.is_false(H.readable(fd), "readable after an empty poll, round " .. i)
    end
    p:close()
  end)

  describe("secrets", function()
    it("never appear in logs, reports or errors (#11)", function()
      local secret = "hunter2-Very-Secret-Value"
      local lines, errs = {}, {}
      local p = producers.kafka.new{ bootstrap_servers = m:bootstraps(),
        logger = function(level, line) lines[#lines + 1] = line end,
        config = { ["security.protocol"] = "SASL_PLAINTEXT", ["sasl.mechanisms"] = "OAUTHBEARER",
                   ["enable.sasl.oauthbearer.unsecure.jwt"] = true,
                   ["sasl.oauthbearer.config"] = secret, ["message.timeout.ms"] = 500 } }
      assert.is_true(p:produce("t", "k", "v", { on_delivery = function(err, r)
        errs[#errs + 1] = tostring(err) .. " " .. tostring(r.cause)
      end }))
      H.wait_until(function() return #errs > 0 end, 10, function() p:poll(0.1) end)
      p:close(0)
      local text = table.concat(lines, "\n") .. table.concat(errs, "\n")
      assert.matches("sasl.oauthbearer.config", text, 1, true)  -- the error itself is seen
      assert.is_nil(text:find("hunter2", 1, true))
      assert.is_nil(text:find("Secret", 1, true))
    end)

    it("config errors name the property, never a secret value, and refuse NaN and NUL", function()
      assert.has_error(function()
        producers.kafka.new{ bootstrap_servers = "x:1", config = { ["linger.ms"] = 0 / 0 } }
      end, "config: 'linger.ms' must be a finite number, got number")
      assert.has_error(function()
        producers.kafka.new{ bootstrap_servers = "x:1", config = { ["client.id"] = "a\0b" } }
      end, "config: 'client.id' must not contain a NUL byte, got a string with one")
      assert.has_error(function()
        producers.kafka.new{ bootstrap_servers = "x:1", config = { ["linger.ms\0x"] = 1 } }
      end, "config: property names must not contain a NUL byte")
    end)
  end)
end)
