-- The NATS JetStream backend (issue #23, src/nats/) against a real
-- nats-server -js that this file starts (scripts/nats/server.sh, servers
-- of its own: N.own(3)), read back with nats-py (scripts/nats/read.py),
-- a client we did not write: every accepted message on the stream once,
-- tables as JSON, strings as bytes, the key in its header, custom
-- headers, ids; the named failures of a subject no stream captures and
-- of a full stream; duplicates dropped by the server; reports as values;
-- a callback that produces, flushes or closes; what NATS refuses.
local N = require("support.nats")
local H = require("helpers")
local producers = require("producers")
local cjson = require("cjson")

local BUSY = "not allowed from a delivery callback, logger or encoder of the same producer"

-- Each JSON text of list parsed and printed again (keys sorted) by python.
local function python_json(list)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  for _, s in ipairs(list) do f:write(s, "\n") end
  f:close()
  local out = H.sh(("env -u LD_PRELOAD %s -c %s < %s"):format(H.shell_quote(N.python), H.shell_quote(
    "import json,sys\nfor l in sys.stdin: print(json.dumps(json.loads(l), sort_keys=True))"), path))
  os.remove(path)
  local parsed = {}
  for line in out:gmatch("[^\n]+") do parsed[#parsed + 1] = line end
  return parsed
end

if not producers.nats.available then
  describe("producers.nats #nats_unit", function() pending("built without NATS (no libnats)") end)
  return
end

describe("producers.nats against nats-server #nats_unit", function()
  local env

  lazy_setup(function()
    N.own(3)
    env = N.start()
  end)

  lazy_teardown(function()
    N.stop()
  end)

  local function new(opts)
    opts = opts or {}
    opts.servers = opts.servers or env.NATS_URL
    return assert(producers.nats.new(opts))
  end

  it("puts every accepted message on the stream once: JSON, bytes, key header, headers, id", N.with_logs(function()
    local stream = N.stream("DELIVER")
    N.create_stream(stream, { "deliver.>" })
    local reports = {}
    local p = new({ on_delivery = function(err, r) assert.is_nil(err); reports[#reports + 1] = r end })
    local binary = "a\0b\255\r\nz"
    assert.is_true(p:produce("deliver.json", "k-1", { n = 1, s = "é", list = { 1, 2 } }))
    assert.is_true(p:produce("deliver.bytes", "k-2", binary, { headers = { trace = "t-2", other = "o" } }))
    assert.is_true(p:produce("deliver.json", nil, { n = 3 }, { id = "id-3", headers = { { "rep", "a" }, { "rep", "b" } } }))
    for i = 4, 50 do assert.is_true(p:produce("deliver.many", "k-" .. i, "v-" .. i)) end
    assert.is_true(p:flush(20))
    assert.are.equal(50, #reports)
    assert.are.equal(0, p:queue_length())
    local seqs = {}
    for _, r in ipairs(reports) do
      assert.are.equal(stream, r.stream)
      assert.are.equal(r.sequence, r.offset)
      assert.is_false(r.duplicate)
      assert.are.equal(r.topic, r.subject)
      assert.is_nil(seqs[r.sequence], "one report a sequence")
      seqs[r.sequence] = r
    end
    local first, second, third = reports[1], reports[2], reports[3]
    assert.are.same({ "deliver.json", "k-1" }, { first.subject, first.key })
    assert.are.equal(binary, second.value)
    assert.are.same({ trace = "t-2", other = "o" }, second.headers)
    assert.are.equal("id-3", third.id)
    assert.is_nil(third.key)
    assert.are.same({ rep = "a" }, third.headers)
    assert.are.same({ { "rep", "a" }, { "rep", "b" } }, third.header_list)

    local recs = N.read(stream)
    assert.are.equal(50, #recs)
    for i, rec in ipairs(recs) do
      assert.are.equal(i, rec.seq)
      assert.are.equal(seqs[i].subject, rec.subject)
      assert.are.equal(seqs[i].value, rec.value)
    end
    assert.are.same({ '{"list": [1, 2], "n": 1, "s": "\\u00e9"}', '{"n": 3}' },
      python_json({ recs[1].value, recs[3].value }))
    assert.are.equal("k-1", recs[1].headers["Producers-Key"])
    assert.are.equal(binary, recs[2].value)
    assert.are.same({ ["Producers-Key"] = "k-2", trace = "t-2", other = "o" }, recs[2].headers)
    assert.are.equal("id-3", recs[3].headers["Nats-Msg-Id"])
    assert.is_nil(recs[3].headers["Producers-Key"])
    for i = 4, 50 do
      assert.are.same({ "deliver.many", "v-" .. i, "k-" .. i },
        { recs[i].subject, recs[i].value, recs[i].headers["Producers-Key"] })
    end
    local m = p:metrics()
    assert.are.same({ 50, 0, 0, 0, 0, "connected" },
      { m.delivered, m.failed, m.queued, m.pending_acks, m.duplicates, m.status })
    assert.are.equal(env.NATS_URL, m.server)
    p:close()
    assert.is_true(p:is_closed())
  end))

  it("fails a subject no stream captures with NO_STREAM, one report, at once", N.with_logs(function()
    local got = {}
    local p = new({ on_delivery = function(err, r) got[#got + 1] = { err, r } end })
    assert.is_true(p:produce("nobody.listens", "k", "v"))
    assert.is_true(p:flush(10))
    assert.are.equal(1, #got)
    local err, r = got[1][1], got[1][2]
    assert.are.equal("no stream captures subject 'nobody.listens'", err)
    assert.are.same({ "NO_STREAM", "NO_STREAM", "nobody.listens", "k", "v" },
      { r.err_name, r.error, r.topic, r.key, r.value })
    assert.are.equal(503, r.error_object.code)
    assert.are.equal("NO_STREAM", r.error_object.name)
    assert.are.equal(err, tostring(r.error_object))
    assert.is_false(r.error_object.retriable)
    assert.is_nil(r.stream)
    assert.are.same({ 0, 1 }, { p:stats().delivered, p:stats().failed })
    p:close()
  end))

  it("fails past a full stream's limit with STREAM_FULL (10077)", N.with_logs(function()
    local stream = N.stream("FULL")
    N.create_stream(stream, { "fullp.>" }, { max_msgs = 2, discard = "new" })
    local got = {}
    local p = new({ on_delivery = function(err, r) got[#got + 1] = { err, r } end })
    for i = 1, 3 do assert.is_true(p:produce("fullp.x", nil, "m" .. i)) end
    assert.is_true(p:flush(10))
    assert.are.equal(3, #got)
    local failed = {}
    for _, g in ipairs(got) do if g[1] then failed[#failed + 1] = g end end
    assert.are.equal(1, #failed)
    assert.are.equal("maximum messages exceeded", failed[1][1])
    assert.are.same({ "STREAM_FULL", 10077 }, { failed[1][2].err_name, failed[1][2].error_object.code })
    assert.are.equal(2, N.info(stream).messages)
    p:close()
  end))

  it("reports a duplicate id as the server does: duplicate = true, the first copy's sequence", N.with_logs(function()
    local stream = N.stream("DUP")
    N.create_stream(stream, { "dup.>" }, { duplicate_window = 60 })
    local p = new({ serve_on_produce = false })
    assert.is_true(p:produce("dup.x", "a", "first", { id = "same" }))
    assert.is_true(p:produce("dup.x", "b", "again", { id = "same" }))
    assert.is_true(p:produce("dup.x", "c", "other", { id = "other" }))
    local list = {}
    assert.is_true(N.wait_until(function()
      for _, r in ipairs(p:reports()) do list[#list + 1] = r end
      return #list == 3
    end, 10))
    table.sort(list, function(x, y) return x.key < y.key end)
    assert.are.same({ false, true, false }, { list[1].duplicate, list[2].duplicate, list[3].duplicate })
    assert.are.equal(list[1].sequence, list[2].sequence)
    assert.are.equal(list[1].sequence + 1, list[3].sequence)
    for _, r in ipairs(list) do assert.is_nil(r.err) end
    local recs = N.read(stream)
    assert.are.same({ "first", "other" }, { recs[1].value, recs[2].value })
    assert.are.equal(2, #recs)
    assert.are.equal(1, p:metrics().duplicates)
    p:close()
  end))

  it("wakes event_fd when an ack arrives, and logs a failure by default", N.with_logs(function()
    local stream = N.stream("WAKE")
    N.create_stream(stream, { "wake.>" })
    local log = H.recorder()
    local p = new({ serve_on_produce = false, logger = log.fn, log_level = "debug" })
    local fd = p:event_fd()
    assert.are.equal(fd, p:event_fd())
    p:poll(0)
    assert.is_false(H.readable(fd))
    assert.is_true(p:produce("wake.x", "k", "v"))
    assert.is_true(N.wait_until(function() return H.readable(fd) end, 10))
    assert.are.equal(1, p:poll(0))
    assert.is_false(H.readable(fd))
    assert.truthy(log.find("delivered to wake.x: stream " .. stream .. " sequence 1", "debug"), log.text())
    assert.is_true(p:produce("nobody.wakes", "k", "v"))
    assert.is_true(p:flush(10))
    assert.truthy(log.find("delivery failed: nobody.wakes: no stream captures subject 'nobody.wakes' %(NO_STREAM%)",
      "error"), log.text())
    p:close()
  end))

  it("lets a callback produce, and refuses its flush and close", N.with_logs(function()
    local stream = N.stream("REENTER")
    N.create_stream(stream, { "reenter.>" })
    local keys, p = {}, nil
    p = new({ on_delivery = function(err, r)
      assert.is_nil(err)
      keys[#keys + 1] = r.key
      if r.key == "first" then assert.is_true(p:produce("reenter.x", "second", "v")) end
    end })
    assert.is_true(p:produce("reenter.x", "first", "v"))
    assert.is_true(p:flush(10))
    assert.are.same({ "first", "second" }, keys)
    for _, method in ipairs({ "flush", "close" }) do
      local q
      q = new({ on_delivery = function() q[method](q) end })
      assert.is_true(q:produce("reenter.x", "k", "v"))
      local ok, err = pcall(q.flush, q, 10)
      assert.is_false(ok)
      assert.matches(method .. ": " .. BUSY, err, 1, true)
      assert.is_false(q:is_closed())
      q:close()
      assert.is_true(q:is_closed())
    end
    p:close()
    assert.are.equal(4, #N.read(stream))   -- first, second, one of each q
  end))

  it("refuses what NATS cannot carry, and Kafka's own methods, by name", N.with_logs(function()
    local p = new()
    local ok, msg, name, err = p:produce("x.y", "bad\nkey", "v")
    assert.are.same({ nil, "_INVALID_ARG" }, { ok, name })
    assert.matches("CR, LF or NUL", msg, 1, true)
    assert.are.equal(-186, err.code)
    ok, msg, name = p:produce("x.y", nil, "v", { partition = 1 })
    assert.are.same({ nil, "_INVALID_ARG" }, { ok, name })
    assert.matches("no partitions", msg, 1, true)
    ok, msg, name = p:produce("x.y", nil, "v", { headers = { ["a:b"] = "v" } })
    assert.are.same({ nil, "_INVALID_ARG" }, { ok, name })
    ok, msg, name = p:produce("x.y", nil, ("x"):rep(2 * 1024 * 1024))   -- the server's max_payload: 1 MB
    assert.are.same({ nil, "MSG_SIZE_TOO_LARGE", "Payload 2097" }, { ok, name, msg:sub(1, 12) })
    assert.matches("greater than maximum allowed: 1048576", msg, 1, true)
    assert.has_error(function() p:produce("x.y", nil, "v", { id = 5 }) end, "opts.id: expected string, got number")
    assert.are.equal(0, p:queue_length())
    for _, method in ipairs({ "init_transactions", "begin_transaction", "commit_transaction", "abort_transaction" }) do
      local ok2, e = pcall(p[method], p)
      assert.is_false(ok2)
      assert.matches(method .. " is Kafka-only", e, 1, true)
    end
    assert.has_error(function() producers.nats.new({ servers = env.NATS_URL, bootstrap_servers = "x" }) end,
      "producers.nats.new: unknown option 'bootstrap_servers' (did you mean 'servers'?)")
    assert.has_error(function() producers.nats.new({ servers = env.NATS_URL, config = {} }) end,
      "producers.nats.new: option 'config' is Kafka-only (docs/nats.md)")
    assert.has_error(function() producers.nats.new({}) end,
      'producers.nats.new: servers is required (e.g. "nats://127.0.0.1:4222")')
    assert.has_error(function() producers.nats.new({ servers = env.NATS_URL, user = "u" }) end,
      "producers.nats.new: user and password must be given together")
    -- one backend's C methods refuse the other's producer
    local core = require("producers.core")
    local k = producers.kafka.new({ bootstrap_servers = "127.0.0.1:1", logger = function() end })
    for _, method in ipairs({ "purge", "metrics", "begin_transaction" }) do
      local ok2, e = pcall(core.methods[method], p)
      assert.is_false(ok2)
      assert.matches("bad argument #1 to '[^']*' %(expected a Kafka producer%)", e)
    end
    for _, method in ipairs({ "purge", "metrics" }) do
      local ok2, e = pcall(core.nats_methods[method], k)
      assert.is_false(ok2)
      assert.matches("bad argument #1 to '[^']*' %(expected a NATS producer%)", e)
    end
    k:close(0)
    assert.is_true(producers.nats.check({ servers = env.NATS_URL }))
    assert.are.equal("producers.nats (producers-nats)", tostring(p))
    p:close()
    assert.has_error(function() p:produce("x.y", nil, "v") end, "producer is closed")
    assert.are.same(p, p)
    assert.are.equal("producers.nats", producers.new("nats", { servers = env.NATS_URL }):close() or "producers.nats")
  end))

  it("says so when built without NATS (no libnats): new raises, check fails", function()
    local core = require("producers.core")
    local without = setmetatable({ nats_new = false, nats_methods = false, nats_version = false },
      { __index = core })
    local saved = package.loaded["producers.core"]
    package.loaded["producers.core"] = setmetatable({}, { __index = function(_, k)
      if without[k] == false then return nil end
      return core[k]
    end })
    local ok, Nats = pcall(dofile, "lua/producers/nats.lua")
    package.loaded["producers.core"] = saved
    assert.is_true(ok, Nats)
    assert.is_false(Nats.available)
    local err = "producers.nats: built without NATS support (libnats was not found when producers was built; "
      .. "install libnats-dev and build with -DPRODUCERS_NATS=ON)"
    assert.has_error(function() Nats.new({ servers = "nats://127.0.0.1:4222" }) end, err)
    assert.are.same({ nil, err }, { Nats.check({ servers = "nats://127.0.0.1:4222" }) })
    assert.is_true(producers.nats.available)
    assert.matches("^%d+%.%d+%.%d+", producers.nats.nats_c_version)
  end)

  it("sends each message's own bytes and id while finalizers produce during produce", N.with_logs(function()
    local on_collect = require("support.finalizer")
    local stream = N.stream("UAF")
    N.create_stream(stream, { "uaf.>" }, { duplicate_window = 60 })
    local p = new()
    local traps, n = 0, 400
    for i = 1, n do
      on_collect(function()
        traps = traps + 1
        p:produce("uaf.trap", "trap-" .. traps, { trap = traps, pad = ("t"):rep(traps % 40) }, { id = "trap-" .. traps })
      end)
      if i % 50 == 0 then collectgarbage("step") end
      assert(p:produce("uaf.msg", "msg-" .. i, { id = i, pad = ("m"):rep(i % 60) },
        { id = "msg-" .. i, headers = { h = tostring(i) }, on_delivery = function() end }))
    end
    collectgarbage()
    assert.is_true(p:flush(20))
    p:close()
    local recs = N.read(stream)
    assert.are.equal(n + traps, #recs)
    for _, r in ipairs(recs) do
      local v, key = cjson.decode(r.value), r.headers["Producers-Key"]
      assert.are.equal(key, r.headers["Nats-Msg-Id"])
      if key:find("^msg%-") then
        local id = ("%d"):format(v.id)      -- cjson gives 5.4 a float
        assert.are.same({ "msg-" .. id, ("m"):rep(v.id % 60), id }, { key, v.pad, r.headers.h })
      else
        assert.are.equal(("trap-%d"):format(v.trap), key)
      end
    end
  end))

  it("keeps no registry ref once closed (callbacks, lent values)", N.with_logs(function()
    local stream = N.stream("REFS")
    N.create_stream(stream, { "refs.>" })
    local function count() return H.registry_refs(function(v) return type(v) == "function" or type(v) == "string" end) end
    collectgarbage()
    local before = count()
    local p = new({ on_delivery = function() end, logger = function() end })
    local big = ("x"):rep(4096)
    for i = 1, 20 do
      assert.is_true(p:produce(i % 2 == 0 and "refs.a" or "nostream.refs", nil, big .. i,
        { on_delivery = function() end }))
    end
    assert.is_true(p:flush(10))
    p:close()
    p = nil
    collectgarbage()
    assert.are.equal(before, count())
    assert.are.equal(10, N.info(stream).messages)
  end))

  describe("under valgrind #valgrind", function()
    it("finds no invalid access and no leak in the NATS paths", N.with_logs(function()
      N.create_stream(N.stream("LEAK"), { "leak.>" })
      local out, ok, code, report = H.valgrind("spec/support/nats_leakcheck.lua",
        "NATS_URL=" .. H.shell_quote(env.NATS_URL))
      -- 20 + 20 delivered, 20 without a stream, 10 purged or delivered first
      local delivered, failed = out:match("nats_leakcheck: (%d+) delivered, (%d+) failed")
      assert.are.equal(70, tonumber(delivered) + tonumber(failed), out)
      assert.is_true(tonumber(delivered) >= 40 and tonumber(failed) >= 20, out)
      assert.is_true(ok, ("valgrind exit %s\n%s\n%s"):format(tostring(code), out, report))
    end))
  end)
end)
