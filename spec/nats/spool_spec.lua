-- The durable spool on the NATS backend (issues #22 and #23: src/nats/
-- spool.c on core/spooling.c) against a real nats-server -js that this
-- file starts (servers of its own: N.own(9)), read back with nats-py
-- (scripts/nats/read.py), a client we did not write: a message through
-- the spool is on the stream once, with its producers-id and Nats-Msg-Id;
-- the server down past ack_timeout gives no failure report and every
-- accepted message is on the stream once when it returns (the copies
-- sent again dropped by Nats-Msg-Id); NO_STREAM final, but retried just
-- after a reconnect; max_pending acks in flight keep records in the
-- spool without stall_wait; a close during an outage and a producer
-- killed -9 leave their records to the next one; one producer per
-- directory; the options checked as Kafka's.
local N = require("support.nats")
local H = require("helpers")
local S = require("support.spool")
local child = require("support.child")
local producers = require("producers")

if not producers.nats.available then
  describe("producers.nats's spool #nats_unit", function() pending("built without NATS (no libnats)") end)
  return
end

local ID = "^%x+%-%d+$"          -- producers-id: 32 hex digits, '-', the seq

-- The records of stream by their value: value -> count, and the list.
local function by_value(stream)
  local recs, count = N.read(stream), {}
  for _, r in ipairs(recs) do count[r.value] = (count[r.value] or 0) + 1 end
  return count, recs
end

-- Asserts that stream holds total records, "v1" .. "v<n>" once each.
local function assert_once(stream, n, total)
  local count, recs = by_value(stream)
  assert.are.equal(total, #recs)
  for i = 1, n do assert.are.equal(1, count["v" .. i], "v" .. i) end
end

describe("producers.nats with a spool #nats_unit", function()
  local env, dir

  lazy_setup(function()
    N.own(9)
    env = N.start()
  end)

  lazy_teardown(function()
    N.stop()
  end)

  before_each(function() dir = S.tmpdir() end)
  after_each(function() S.rm(dir) end)

  -- A producer spooled in dir, and got: its reports ({err, report}, ...)
  -- unless opts.on_delivery takes them.
  local function spooled(opts)
    local got = {}
    opts = opts or {}
    opts.servers = env.NATS_URL
    opts.spool = opts.spool or { dir = dir }
    opts.reconnect_wait = opts.reconnect_wait or 0.1
    opts.logger = opts.logger or H.recorder().fn
    opts.on_delivery = opts.on_delivery or function(err, r) got[#got + 1] = { err, r } end
    return assert(producers.nats.new(opts)), got
  end

  -- A new stream capturing "<subject>.>".
  local function new_stream(name, subject)
    local stream = N.stream(name)
    N.create_stream(stream, { subject .. ".>" })
    return stream
  end

  it("puts a message through the spool on the stream once, with producers-id as its Nats-Msg-Id", N.with_logs(function()
    local stream = new_stream("SPOOL", "spool")
    local p, got = spooled({})
    for i = 1, 10 do assert.is_true(p:produce("spool.a", "k" .. i, "v" .. i, { headers = { h = "x" .. i } })) end
    assert.is_true(p:produce("spool.a", "mine", "own-id", { id = "my-id-1" }))
    assert.is_true(p:flush(10))
    assert.are.equal(11, #got)
    for i, g in ipairs(got) do
      assert.is_nil(g[1])
      if i <= 10 then       -- the key and headers as sent, from a record's C bytes
        assert.are.same({ "k" .. i, "v" .. i, "x" .. i }, { g[2].key, g[2].value, g[2].headers.h })
        assert.matches(ID, g[2].headers["producers-id"])
        assert.are.equal(g[2].headers["producers-id"], g[2].id)
      end
    end
    assert.are.same({ records = 0 }, { records = p:metrics().spool.records })
    p:close()
    local count, recs = by_value(stream)
    assert.are.equal(11, #recs)
    for i = 1, 10 do
      local r = recs[i]
      assert.are.same({ "v" .. i, "k" .. i, "x" .. i }, { r.value, r.headers["Producers-Key"], r.headers.h })
      assert.matches(ID, r.headers["producers-id"])
      assert.are.equal(r.headers["producers-id"], r.headers["Nats-Msg-Id"])
      assert.are.equal(1, count["v" .. i])
    end
    -- opts.id travels in the record: the caller's id wins
    assert.are.same({ "own-id", "my-id-1" }, { recs[11].value, recs[11].headers["Nats-Msg-Id"] })
    assert.matches(ID, recs[11].headers["producers-id"])
  end))

  it("sends neither producers-id nor a Nats-Msg-Id of its own with id_header = false; opts.id still travels", N.with_logs(function()
    local stream = new_stream("NOID", "noid")
    local p, got = spooled({ spool = { dir = dir, id_header = false } })
    assert.is_true(p:produce("noid.a", "k1", "v1", { headers = { h = "x" } }))
    assert.is_true(p:produce("noid.a", "k2", "v2", { id = "my-id-2" }))
    assert.is_true(p:flush(10))
    assert.are.equal(2, #got)
    assert.is_nil(got[1][1])
    assert.are.same({ "k1", "v1", "x" }, { got[1][2].key, got[1][2].value, got[1][2].headers.h })
    assert.is_nil(got[1][2].headers["producers-id"])
    p:close()
    local _, recs = by_value(stream)
    assert.are.equal(2, #recs)
    assert.are.same({ "v1", "k1", "x" }, { recs[1].value, recs[1].headers["Producers-Key"], recs[1].headers.h })
    assert.is_nil(recs[1].headers["producers-id"])
    assert.is_nil(recs[1].headers["Nats-Msg-Id"])
    assert.are.same({ "v2", "my-id-2" }, { recs[2].value, recs[2].headers["Nats-Msg-Id"] })
    assert.is_nil(recs[2].headers["producers-id"])
  end))

  it("fails a subject no stream captures for good: one NO_STREAM report, the record acked", N.with_logs(function()
    local p, got = spooled({})
    assert.is_true(p:produce("nobody.spooled", "k", "v"))
    assert.is_true(p:flush(10))
    assert.are.equal(1, #got)
    assert.are.same({ "NO_STREAM", false }, { got[1][2].err_name, got[1][2].error_object.retriable })
    assert.are.same({ 0, 0 }, { p:metrics().spool.records, p:queue_length() })
    p:close()
  end))

  it("retries NO_STREAM just after a reconnect (JetStream may be loading its streams), then reports it once", N.with_logs(function()
    local p, got = spooled({})
    N.down("plain")
    N.up("plain")
    assert.is_true(N.wait_until(function() p:poll(0.05); return p:metrics().status == "connected" end, 10))
    assert.is_true(p:produce("nobody.after", "k", "v"))
    assert.is_true(p:flush(15))
    assert.are.equal(1, #got)
    assert.are.same({ "NO_STREAM", false }, { got[1][2].err_name, got[1][2].error_object.retriable })
    assert.is_true(p:metrics().spool.resent > 0, "sent again within the grace")
    assert.are.same({ 0, 1 }, { p:metrics().spool.records, p:metrics().failed })
    p:close()
  end))

  it("keeps records in the spool while max_pending acks are in flight, without stall_wait at each produce", N.with_logs(function()
    local stream = new_stream("PENDING", "pending")
    -- without the spool's check, each produce past max_pending would wait
    -- stall_wait (0.5 s: 25 s for these 50)
    local p, got = spooled({ max_pending = 5, stall_wait = 0.5 })
    N.down("plain")
    local t0 = os.time()
    for i = 1, 50 do assert.is_true(p:produce("pending.x", "k" .. i, "v" .. i)) end
    assert.is_true(os.time() - t0 <= 5, "50 produces took " .. (os.time() - t0) .. " s")
    assert.are.same({ 5, 50 }, { p:metrics().pending_acks, p:metrics().spool.records })
    N.up("plain")
    assert.is_true(p:flush(30))
    assert.are.equal(50, #got)
    for _, g in ipairs(got) do assert.is_nil(g[1], g[1]) end
    p:close()
    assert_once(stream, 50, 50)
  end))

  it("keeps what the server did not ack past ack_timeout: no failure report, each message once when it returns", N.with_logs(function()
    local stream = new_stream("OUTAGE", "outage")
    local p, got = spooled({ ack_timeout = 0.3 })
    assert.is_true(p:produce("outage.x", "warm", "warm"))
    assert.is_true(p:flush(10))
    N.down("plain")
    for i = 1, 30 do assert.is_true(p:produce("outage.x", "k" .. i, "v" .. i)) end
    -- every message timed out at least once and went back to the spool
    assert.is_true(N.wait_until(function()
      p:poll(0.05)
      return p:metrics().spool.resent >= 30
    end, 20), "resent: " .. p:metrics().spool.resent)
    assert.are.equal(1, #got)                       -- the warm-up's only
    assert.are.equal(30, p:queue_length())
    N.up("plain")
    assert.is_true(p:flush(30))
    assert.are.equal(31, #got)
    for _, g in ipairs(got) do assert.is_nil(g[1], g[1]) end
    local m = p:metrics()
    assert.are.same({ 0, 0 }, { m.failed, m.spool.records })
    -- the first copies waited in nats.c's reconnect buffer and reached the
    -- server first: the copies sent again were acked as duplicates, dropped
    -- by their Nats-Msg-Id (the stream below holds each once)
    assert.is_true(m.duplicates > 0, "duplicates: " .. m.duplicates)
    assert.is_true(m.spool.resent_possibly_persisted >= 30)
    p:close()
    assert_once(stream, 30, 31)
  end))

  it("keeps in the spool what a close during an outage leaves: no failure report, the next producer delivers it", N.with_logs(function()
    local stream = new_stream("CLOSED", "closed")
    local log = H.recorder()
    local p, got = spooled({ logger = log.fn })
    assert.is_true(p:produce("closed.x", "warm", "warm"))
    assert.is_true(p:flush(10))
    N.down("plain")
    for i = 1, 5 do assert.is_true(p:produce("closed.x", "k" .. i, "v" .. i)) end
    p:close(0.2)
    assert.are.equal(1, #got)                       -- the warm-up's only
    assert.is_nil(log.find("not delivered"), log.text())
    N.up("plain")
    local replayed = 0
    p = spooled({ on_delivery = function(err, r)
      assert.is_nil(err)
      if r.replayed then replayed = replayed + 1 end
    end })
    assert.is_true(p:flush(30))
    assert.are.equal(5, replayed)
    p:close()
    assert_once(stream, 5, 6)
  end))

  -- A producer spooled in arg[2]: delivers 1..K, then, once told "go",
  -- accepts K+1..N (printing each), then waits to be killed.
  local PRODUCER = [[
local producers = require("producers")
local url, dir, subject, K, N = arg[1], arg[2], arg[3], tonumber(arg[4]), tonumber(arg[5])
local p = assert(producers.nats.new{ servers = url, spool = { dir = dir }, reconnect_wait = 0.1,
  logger = function() end })
for i = 1, K do assert(p:produce(subject, nil, tostring(i))) end
assert(p:flush(20))
io.stdout:write("flushed\n"); io.stdout:flush()
io.read("*l")
for i = K + 1, N do
  assert(p:produce(subject, nil, tostring(i)))
  io.stdout:write("accepted ", i, "\n"); io.stdout:flush()
end
io.stdout:write("done\n"); io.stdout:flush()
io.read("*l")
]]

  it("loses nothing a producer killed -9 accepted: the next one on its directory delivers it first", N.with_logs(function()
    local stream = new_stream("KILL", "kill")
    local K, NN, NEW = 10, 60, 5
    local c = child.start{ code = PRODUCER, args = { env.NATS_URL, dir, "kill.x", tostring(K), tostring(NN) } }
    finally(function() c:cleanup() end)
    c:wait_output("flushed", 30)
    N.down("plain")
    c:write("go\n")
    c:wait_output("done", 30)
    c:kill("KILL")
    assert.are.equal(137, c:wait(10))
    N.up("plain")
    local log, replayed = H.recorder(), 0
    local p = spooled({ logger = log.fn, on_delivery = function(err, r)
      assert.is_nil(err)
      if r.replayed then replayed = replayed + 1 end
    end })
    assert.truthy(log.find(("resumed: %d records"):format(NN - K), "info"), log.text())
    for i = NN + 1, NN + NEW do assert.is_true(p:produce("kill.x", nil, tostring(i))) end
    assert.is_true(p:flush(30))
    assert.are.equal(NN - K, replayed)
    assert.are.equal(NN - K, p:metrics().spool.replayed)
    p:close()
    local values = {}
    for _, r in ipairs(N.read(stream)) do values[#values + 1] = r.value end
    local want = {}
    for i = 1, NN + NEW do want[i] = tostring(i) end
    assert.are.same(want, values)
  end))

  it("lets one producer at a time have a directory: SPOOL_LOCKED, and new's failure frees it", N.with_logs(function()
    local p = spooled()
    local ok, err = pcall(producers.nats.new, { servers = env.NATS_URL, spool = { dir = dir } })
    assert.is_false(ok)
    assert.are.equal("SPOOL_LOCKED", err.name)
    assert.matches("^spool .* is in use by pid %d+$", err.message)
    p:close()
    -- no server: new returns the failure and leaves the directory free
    local q, msg, name = producers.nats.new{ servers = "nats://127.0.0.1:1", spool = { dir = dir },
      connect_timeout = 1 }
    assert.are.same({ nil, "_NO_SERVER" }, { q, name }, msg)
    p = spooled()
    assert.is_false(p:is_closed())
    p:close()
  end))

  it("checks spool's options as producers.kafka does, naming them", function()
    local function refused(spool, message)
      local ok, err = pcall(function()
        local p = producers.nats.new{ servers = "nats://127.0.0.1:1", spool = spool }
        return p                                    -- not a tail call: new's caller is this line
      end)
      assert.is_false(ok)
      assert.matches("producers.nats.new: " .. message, err, 1, true)
      assert.matches("^spool_spec.lua:%d+: ", err:match("[^/]*$"))   -- the caller's line
      local ok2, err2 = producers.nats.check({ servers = "nats://127.0.0.1:1", spool = spool })
      assert.is_nil(ok2)
      assert.matches("^producers.nats.new: " .. message:gsub("%p", "%%%0"), err2)
    end
    refused({}, "option 'spool.dir' is required")
    refused({ dir = "/tmp/x", fsync = "sometimes" }, "option 'spool.fsync' must be 'never', 'interval' or 'always', got 'sometimes'")
    refused({ dir = "/tmp/x", max_bytes = 0 }, "option 'spool.max_bytes' must be an integer from 4096 to 9007199254740992, got 0")
    refused({ dir = "/tmp/x", colour = 1 }, "option 'spool.colour' is unknown")
    assert.has_error(function() producers.nats.new{ servers = "nats://127.0.0.1:1", spool = "dir" } end,
      "producers.nats.new: option 'spool' must be a table, got string")
  end)
end)
