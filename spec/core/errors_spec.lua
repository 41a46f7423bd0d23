-- Errors as values (issue #16): every failure that reaches Lua can be
-- inspected as an error object (message, name, code, retriable, fatal,
-- txn_requires_abort) returned beside today's values, so code that
-- compares the strings keeps working; on_error receives client-level
-- errors; a fatal error says so on every later produce.
local producers = require("producers")
local core = require("producers.core")
local H = require("helpers")
local sleep = require("system").sleep

local BUSY = "not allowed from a delivery callback, logger or encoder of the same producer"

-- A producer whose broker never answers: messages wait, then time out.
local function unreachable(opts)
  opts = opts or {}
  opts.bootstrap_servers = "127.0.0.1:1"
  opts.config = opts.config or { ["message.timeout.ms"] = 300 }
  opts.logger = opts.logger or function() end
  return producers.kafka.new(opts)
end

local function is_error_object(e)
  return getmetatable(e) ~= nil and getmetatable(e) == getmetatable(producers.error("_FAIL"))
end

describe("error objects", function()
  local m
  setup(function() m = producers.mock_cluster(1) end)
  teardown(function() m:close() end)

  describe("producers.error", function()
    it("has message, name, code and the three flags, and prints as its message", function()
      local e = producers.error("_QUEUE_FULL")
      assert.same({ "Local: Queue full", "_QUEUE_FULL", -184, true, false, false },
        { e.message, e.name, e.code, e.retriable, e.fatal, e.txn_requires_abort })
      assert.equal("Local: Queue full", tostring(e))
      assert.is_true(is_error_object(e))
    end)

    it("takes a message and flags, retriable from the name unless given", function()
      local e = producers.error("INVALID_PRODUCER_EPOCH", "fenced", { fatal = true, txn_requires_abort = true })
      assert.same({ "fenced", false, true, true }, { e.message, e.retriable, e.fatal, e.txn_requires_abort })
      assert.is_true(producers.error("NOT_LEADER_FOR_PARTITION").retriable)
      assert.is_false(producers.error("_MSG_TIMED_OUT", nil, { retriable = false }).retriable)
    end)

    it("refuses a name librdkafka does not know", function()
      assert.has_error(function() producers.error("NOPE") end,
        "bad argument #1 to 'error' (unknown error name 'NOPE')")
    end)
  end)

  describe("produce", function()
    it("returns the error object as a fourth value after nil, message, name", function()
      local p = H.producer(m, { config = { ["queue.buffering.max.messages"] = 1 }, serve_on_produce = false })
      local topic = H.topic("full")
      assert.is_true(p:produce(topic, nil, "a"))
      local ok, message, name, e = p:produce(topic, nil, "b")
      assert.same({ nil, "Local: Queue full", "_QUEUE_FULL" }, { ok, message, name })
      assert.is_true(is_error_object(e))
      assert.same({ "Local: Queue full", "_QUEUE_FULL", -184, true, false, false },
        { e.message, e.name, e.code, e.retriable, e.fatal, e.txn_requires_abort })
      assert.equal(message, tostring(e))
      assert.is_true(p:flush(10))
      p:close()
    end)

    it("says a message over message.max.bytes is refused locally, naming the limit", function()
      local p = H.producer(m, { serve_on_produce = false })      -- librdkafka's default limit
      local ok, message, name, e = p:produce(H.topic("big"), "k", string.rep("x", 1200000 - 1))
      local text = "message of 1200000 bytes exceeds message.max.bytes (1000000); refused locally"
      assert.same({ nil, text, "MSG_SIZE_TOO_LARGE" }, { ok, message, name })
      assert.is_true(is_error_object(e))
      assert.same({ text, "MSG_SIZE_TOO_LARGE", 10, false }, { e.message, e.name, e.code, e.retriable })
      p:close()
      -- a configured limit; just under it, the record's overhead tips it over
      p = H.producer(m, { serve_on_produce = false, config = { ["message.max.bytes"] = 10000 } })
      local function three(a, b, c) return { a, b, c } end
      assert.same({ nil, "message of 20000 bytes exceeds message.max.bytes (10000); refused locally",
                    "MSG_SIZE_TOO_LARGE" }, three(p:produce("t", nil, string.rep("x", 20000))))
      assert.same({ nil, "message of 9999 bytes exceeds message.max.bytes (10000) with its record overhead; "
                    .. "refused locally", "MSG_SIZE_TOO_LARGE" }, three(p:produce("t", nil, string.rep("x", 9999))))
      p:close()
    end)
  end)

  describe("flush", function()
    it("returns nil, 'timed out', '_TIMED_OUT' and a retriable error object whose queued is n", function()
      local p = unreachable({ config = { ["message.timeout.ms"] = 60000 } })
      assert.is_true(p:produce(H.topic("late"), nil, "x"))
      local ok, message, name, e = p:flush(0.1)
      local left = e.queued
      assert.same({ nil, "timed out", 1 }, { ok, message, left })
      assert.same({ "timed out", "_TIMED_OUT", true, false }, { e.message, e.name, e.retriable, e.fatal })
      p:close(0)
    end)
  end)

  describe("delivery reports", function()
    it("carry the failure as report.error_object, with the same message as err", function()
      local seen = {}
      local p = unreachable({ on_delivery = function(err, r) seen[#seen + 1] = { err, r } end })
      assert.is_true(p:produce(H.topic("lost"), "k", "v"))
      assert.is_true(p:flush(10))
      assert.equal(1, #seen)
      local err, r = seen[1][1], seen[1][2]
      local e = r.error_object
      assert.is_true(is_error_object(e))
      assert.same({ err, "_MSG_TIMED_OUT", true, false }, { e.message, e.name, e.retriable, e.fatal })
      assert.equal(err, tostring(e))
      assert.equal(r.error, e.name)
      p:close()
    end)

    it("have no error_object on success", function()
      local r
      local p = H.producer(m, { on_delivery = function(_, report) r = report end })
      assert.is_true(p:produce(H.topic("ok"), "k", "v"))
      assert.is_true(p:flush(10))
      assert.is_nil(r.error)
      assert.is_nil(r.error_object)
      p:close()
    end)

    it("name a broker's refusal, not retriable when the broker says so", function()
      local topic = H.topic("denied")
      assert.is_true(m:create_topic(topic, 1, 1))
      local r
      local p = H.producer(m, { on_delivery = function(_, report) r = report end })
      assert.is_true(p:produce(topic, "k", "first"))     -- metadata known, connection up
      assert.is_true(p:flush(10))
      m:push_request_errors(0, "TOPIC_AUTHORIZATION_FAILED")
      assert.is_true(p:produce(topic, "k", "v"))
      assert.is_true(p:flush(10))
      assert.same({ "TOPIC_AUTHORIZATION_FAILED", false }, { r.error_object.name, r.error_object.retriable })
      p:close()
    end)

    it("taken as values by reports() carry it too", function()
      local p = unreachable({ serve_on_produce = false })
      assert.is_true(p:produce(H.topic("values"), "k", "v"))
      local list = {}
      assert.is_true(H.wait_until(function()
        for _, r in ipairs(p:reports()) do list[#list + 1] = r end
        return #list == 1
      end, 10, function() sleep(0.05) end))
      assert.same({ "_MSG_TIMED_OUT", list[1].err }, { list[1].error_object.name, list[1].error_object.message })
      p:close()
    end)
  end)
end)

describe("on_error", function()
  it("receives client-level errors as error objects instead of the logger", function()
    local log, errors = H.recorder(), {}
    local p = unreachable({ logger = log.fn, on_error = function(e) errors[#errors + 1] = e end })
    assert.is_true(H.wait_until(function() return #errors > 0 end, 10, function() p:poll(0.1) end))
    local e = errors[1]
    assert.is_true(is_error_object(e))
    assert.is_true(e.name == "_TRANSPORT" or e.name == "_ALL_BROKERS_DOWN", e.name)
    assert.is_false(e.fatal)
    assert.matches("127.0.0.1:1", tostring(e), 1, true)
    assert.is_nil(log.find("^error: "), log.text())
    p:close(0)
  end)

  it("logs them once at error level without on_error, as before", function()
    local log = H.recorder()
    local p = unreachable({ logger = log.fn })
    assert.is_true(H.wait_until(function() return log.find("^error: ", "error") end, 10,
      function() p:poll(0.1) end))
    p:close(0)
  end)

  it("raising: the error comes out of the serving call with a traceback; the producer goes on", function()
    local calls = 0
    local p = unreachable({ on_error = function()
      calls = calls + 1
      if calls == 1 then error("boom in on_error") end
    end })
    local ok, err
    assert.is_true(H.wait_until(function()
      ok, err = pcall(p.poll, p, 0.1)
      return not ok
    end, 10))
    assert.matches("boom in on_error", err, 1, true)
    assert.matches("stack traceback", err, 1, true)
    assert.equal(1, calls)
    assert.is_true(H.wait_until(function() return calls > 1 end, 10, function() p:poll(0.1) end))
    assert.is_true(p:produce(H.topic("after"), nil, "x"))
    assert.is_false(p:is_closed())
    p:close(0)
  end)

  it("may produce and poll, but not close or flush the same producer", function()
    local p
    local seen = {}
    p = unreachable({ on_error = function()
      if seen.close then return end
      seen.close = { pcall(p.close, p) }
      seen.flush = { pcall(p.flush, p, 0) }
      seen.produce = { p:produce("t", nil, "from on_error") }
      seen.poll = { p:poll(0) }
    end })
    assert.is_true(H.wait_until(function() return seen.close end, 10, function() p:poll(0.1) end))
    assert.matches("close: " .. BUSY, seen.close[2], 1, true)
    assert.matches("flush: " .. BUSY, seen.flush[2], 1, true)
    assert.same({ true }, seen.produce)
    assert.same({ 0 }, seen.poll)
    assert.is_false(p:is_closed())
    p:close(0)
  end)

  it("must be callable", function()
    assert.has_error(function() producers.kafka.new({ bootstrap_servers = "x:1", on_error = 42 }) end,
      "producers.kafka.new: option 'on_error' must be a function, got number")
  end)

  it("leaves no registry ref behind after close", function()
    local function refs() return H.registry_refs(function(v) return type(v) == "function" end) end
    collectgarbage()
    local before = refs()
    local p = unreachable({ on_error = function() end })
    p:poll(0.1)
    p:close(0)
    collectgarbage()
    assert.equal(before, refs())
  end)
end)

describe("a fatal error", function()
  local m
  setup(function() m = producers.mock_cluster(1) end)
  teardown(function() m:close() end)

  it("reaches on_error as fatal, and every later produce returns it", function()
    local errors, reports = {}, {}
    local p = H.producer(m, { on_error = function(e) errors[#errors + 1] = e end,
                              on_delivery = function(err, r) reports[#reports + 1] = r end,
                              serve_on_produce = false })
    assert.is_true(core.testing.fatal_error(p, "_FENCED", "fenced in a spec"))
    for _ = 1, 2 do
      local ok, message, name, e = p:produce(H.topic("fatal"), nil, "x")
      assert.same({ nil, "Local: Fatal error", "_FATAL" }, { ok, message, name })
      assert.same({ "_FENCED", true, "fatal error: test_fatal_error: fenced in a spec" },
        { e.name, e.fatal, e.message })
    end
    assert.is_true(H.wait_until(function() return #errors > 0 end, 10, function() p:poll(0.1) end))
    assert.same({ "_FENCED", true }, { errors[1].name, errors[1].fatal })
    assert.equal(0, #reports)            -- the refused messages get none
    p:close()
    assert.is_true(p:is_closed())
  end)
end)

describe("the memory backend", function()
  it("returns and reports error objects as the Kafka backend does", function()
    local r
    local p = producers.memory.new({ queue_limit = 1, fail = function() return "_MSG_TIMED_OUT" end,
                                     on_delivery = function(_, report) r = report end })
    p.serve = function() return 0 end          -- keep the first message pending
    assert.is_true(p:produce("t", nil, "a"))
    local ok, message, name, e = p:produce("t", nil, "b")
    assert.same({ nil, "Local: Queue full", "_QUEUE_FULL", "_QUEUE_FULL" }, { ok, message, name, e.name })
    p.serve = nil
    p:flush()
    assert.same({ "_MSG_TIMED_OUT", true }, { r.error_object.name, r.error_object.retriable })
  end)
end)
