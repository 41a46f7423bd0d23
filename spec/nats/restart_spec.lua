-- The NATS backend (issue #23) when the server goes away: messages
-- accepted while it is down are delivered once it is back (JetStream
-- on file storage; nats.c keeps them while it reconnects), or get
-- exactly one failure report each; flush's timeout shape; purge and
-- close take back what waits for its ack. Servers of its own (N.own(1));
-- read back with nats-py.
local N = require("support.nats")
local H = require("helpers")
local producers = require("producers")

if not producers.nats.available then
  describe("producers.nats #nats_unit", function() pending("built without NATS (no libnats)") end)
  return
end

describe("producers.nats across server outages #nats_unit", function()
  local env

  lazy_setup(function()
    N.own(1)
    env = N.start()
  end)

  lazy_teardown(function()
    N.stop()
  end)

  -- How a message sent around a restart fails, once: sent into the
  -- connection that died (no ack by ack_timeout, or the connection closed
  -- for good: possibly stored), or to a server that takes clients before
  -- JetStream has loaded its streams again (NO_STREAM, at once: seen
  -- under LuaJIT, whose producer reconnects quicker).
  local LOST = { _MSG_TIMED_OUT = true, _CONNECTION_CLOSED = true, NO_STREAM = true }

  -- A producer whose reports land in got (key -> list of {err, report})
  -- and whose log lines in log.
  local function recorded(opts)
    local got, log = {}, H.recorder()
    opts = opts or {}
    opts.servers = env.NATS_URL
    opts.logger = log.fn
    opts.reconnect_wait = opts.reconnect_wait or 0.1
    opts.on_delivery = function(err, r)
      got[r.key] = got[r.key] or {}
      table.insert(got[r.key], { err, r })
    end
    return assert(producers.nats.new(opts)), got, log
  end

  local function count(got)
    local n = 0
    for _, list in pairs(got) do n = n + #list end
    return n
  end

  it("delivers what was accepted during a restart, each message once, and flush times out meanwhile", N.with_logs(function()
    local stream = N.stream("RESTART")
    N.create_stream(stream, { "restart.>" })
    local p, got, log = recorded({ ack_timeout = 5 })
    for i = 1, 20 do assert.is_true(p:produce("restart.x", "a" .. i, "v")) end
    assert.is_true(p:flush(10))
    N.down("plain")
    for i = 1, 20 do assert.is_true(p:produce("restart.x", "b" .. i, "v")) end
    local ok, msg, name, err = p:flush(0.3)
    assert.are.same({ nil, "timed out", "_TIMED_OUT" }, { ok, msg, name })
    assert.are.equal(20, err.queued)
    assert.are.equal(-185, err.code)
    assert.is_true(err.retriable)
    assert.are.equal(20, p:queue_length())
    assert.truthy(log.find("disconnected", "warn"), log.text())
    N.up("plain")
    for i = 1, 20 do assert.is_true(p:produce("restart.x", "c" .. i, "v")) end
    assert.is_true(p:flush(30))
    assert.truthy(log.find("reconnected to", "info"), log.text())
    assert.are.equal(60, count(got))
    local delivered, n = {}, 0
    for key, list in pairs(got) do
      assert.are.equal(1, #list, key .. ": one report")
      if list[1][1] then
        assert.is_true(LOST[list[1][2].err_name], list[1][2].err_name)
      else
        delivered[key] = true
        n = n + 1
      end
    end
    -- JetStream on file storage keeps them: the ones sent before or
    -- after the outage are delivered, those sent while the client had
    -- not yet seen it go may have failed (one report each)
    for i = 1, 20 do
      assert.is_true(delivered["a" .. i], "a" .. i)
      assert.is_true(delivered["c" .. i], "c" .. i)
    end
    local recs = N.read(stream)
    local seen = {}
    for _, rec in ipairs(recs) do
      local key = rec.headers["Producers-Key"]
      assert.is_nil(seen[key], key .. " stored once")
      seen[key] = true
    end
    for key in pairs(delivered) do assert.is_true(seen[key], key .. " delivered and stored") end
    assert.are.equal(60, p:stats().delivered + p:stats().failed)
    assert.are.equal(n, p:stats().delivered)
    assert.is_true(p:metrics().reconnects >= 1)
    p:close()
  end))

  it("takes messages while server.sh restarts the server: each delivered once, or one failure report", N.with_logs(function()
    local stream = N.stream("MID")
    N.create_stream(stream, { "mid.>" })
    -- a message sent into the dying connection gets no ack: it fails
    -- _MSG_TIMED_OUT after ack_timeout (3 s here, not 30)
    local p, got = recorded({ ack_timeout = 3 })
    local finished = N.server_async("restart", "plain")
    local accepted, refused, i, result = {}, 0, 0, nil
    repeat
      i = i + 1
      local key = "m" .. i
      if p:produce("mid.x", key, "v" .. i) then accepted[#accepted + 1] = key else refused = refused + 1 end
      p:poll(0.005)
      result = finished()
    until result ~= nil or i >= 5000
    assert.is_true(result, "server.sh restart plain")
    for j = i + 1, i + 10 do                      -- and some after it
      accepted[#accepted + 1] = "m" .. j
      assert.is_true(p:produce("mid.x", "m" .. j, "v" .. j))
    end
    assert.is_true(p:flush(30))
    local delivered = {}
    for _, key in ipairs(accepted) do
      assert.are.equal(1, got[key] and #got[key], key .. ": one report")
      local err, r = got[key][1][1], got[key][1][2]
      if err then
        assert.is_true(LOST[r.err_name], r.err_name)
      else
        delivered[key] = true
      end
    end
    assert.are.equal(#accepted, count(got))
    local seen = {}
    for _, rec in ipairs(N.read(stream)) do
      local key = rec.headers["Producers-Key"]
      assert.is_nil(seen[key], key .. " stored once")
      seen[key] = true
    end
    for key in pairs(delivered) do assert.is_true(seen[key], key .. " delivered and stored") end
    assert.is_true(next(delivered) ~= nil)
    p:close()
  end))

  it("fails each message once with _MSG_TIMED_OUT when no ack comes by ack_timeout", N.with_logs(function()
    local p, got = recorded({ ack_timeout = 0.5 })
    N.down("plain")
    for i = 1, 5 do assert.is_true(p:produce("restart.t", "t" .. i, "v")) end
    assert.is_true(N.wait_until(function() p:poll(0.1); return count(got) == 5 end, 15))
    for key, list in pairs(got) do
      assert.are.equal(1, #list, key)
      local err, r = list[1][1], list[1][2]
      assert.matches("no ack within 500 ms", err, 1, true)
      assert.are.same({ "_MSG_TIMED_OUT", -192, true, true },
        { r.err_name, r.error_object.code, r.error_object.retriable, r.possibly_persisted })
    end
    N.up("plain")
    p:close()
  end))

  it("purges what waits for its ack, each with one _PURGE_INFLIGHT report", N.with_logs(function()
    local p, got = recorded()
    N.down("plain")
    for i = 1, 3 do assert.is_true(p:produce("restart.p", "p" .. i, "v")) end
    assert.is_true(p:purge())
    assert.are.equal(3, p:poll(1))
    assert.are.equal(3, count(got))
    for _, list in pairs(got) do
      assert.are.same({ "_PURGE_INFLIGHT", -151 }, { list[1][2].err_name, list[1][2].error_object.code })
    end
    assert.is_true(p:flush(1))
    assert.are.equal(0, p:metrics().pending_acks)
    N.up("plain")
    p:close()
  end))

  it("closes with acks pending: one failure report each, one warning", N.with_logs(function()
    local p, got, log = recorded()
    N.down("plain")
    for i = 1, 3 do assert.is_true(p:produce("restart.c", "c" .. i, "v")) end
    p:close(0.2)
    assert.is_true(p:is_closed())
    assert.are.equal(3, count(got))
    for _, list in pairs(got) do assert.are.equal("_PURGE_INFLIGHT", list[1][2].err_name) end
    assert.truthy(log.find("closed with 3 message%(s%) not delivered", "warn"), log.text())
    N.up("plain")
  end))

  it("hands connection events to the logger and refuses a logger's close", N.with_logs(function()
    local p, lines = nil, {}
    p = assert(producers.nats.new({ servers = env.NATS_URL, reconnect_wait = 0.1, logger = function(level, message)
      lines[#lines + 1] = level .. " " .. message
      if message:find("disconnected") then p:close() end
    end }))
    N.down("plain")
    local ok, err
    assert.is_true(N.wait_until(function()
      ok, err = pcall(p.poll, p, 0.1)
      return not ok
    end, 10), table.concat(lines, "\n"))
    assert.matches("close: not allowed from a delivery callback, logger or encoder of the same producer", err, 1, true)
    assert.is_false(p:is_closed())
    N.up("plain")
    p:close()
    assert.is_true(p:is_closed())
  end))

  it("tells on_error when the connection closes for good, and refuses produce after", N.with_logs(function()
    local errors = {}
    local p = assert(producers.nats.new({ servers = env.NATS_URL, max_reconnects = 0, logger = function() end,
      on_error = function(err) errors[#errors + 1] = err end }))
    N.down("plain")
    assert.is_true(N.wait_until(function() p:poll(0.05); return #errors > 0 end, 10))
    local closed
    for _, e in ipairs(errors) do if e.name == "_CONNECTION_CLOSED" then closed = e end end
    assert.is_truthy(closed)
    assert.are.equal(-1005, closed.code)
    assert.matches("connection closed for good", tostring(closed), 1, true)
    local ok, _, name = p:produce("restart.closed", "k", "v")
    assert.are.same({ nil, "_CONNECTION_CLOSED" }, { ok, name })
    assert.are.equal("closed", p:metrics().status)
    N.up("plain")
    p:close()
  end))

  it("collects a producer with acks pending without hanging or running Lua", N.with_logs(function()
    local p = recorded({ gc_flush_timeout = 0.2 })
    N.down("plain")
    for i = 1, 3 do assert.is_true(p:produce("restart.g", "g" .. i, "v")) end
    p = nil
    collectgarbage()
    collectgarbage()
    N.up("plain")
  end))
end)
