-- Faults injected with librdkafka's mock cluster, counted message by
-- message (issue #12): errors pushed on Produce (retriable and not), the
-- leader's broker down and up, a leader change, a raised round-trip time
-- and message.timeout.ms expiry, each with idempotence off and on, each
-- ended by a flush during the fault then healing, or by close during the
-- fault. Every message carries a unique id and its own on_delivery:
--   * every message produce accepted gets exactly one report;
--   * with idempotence on, a retriable fault loses and duplicates nothing:
--     kcat reads each id back exactly once;
--   * whatever the fault, no id is read back twice with idempotence on,
--     and a message reported delivered is on the broker.
-- Caveat: the mock broker checks producer sequence numbers only for
-- transactional producers, so it never discards a retried batch as a
-- duplicate: these faults are ones where librdkafka itself must not
-- resend a batch the broker appended.
-- Also: the mock cluster's argument checks (create_topic("t", -1, 1) once
-- aborted the process).
local producers = require("producers")
local H = require("helpers")
local unpack = table.unpack or unpack

local N = 150                 -- messages per case: a third before the fault, during it, after it
local FAULTY, HEALTHY = 1, 2  -- partition 0 is led by broker FAULTY, partition 1 by HEALTHY

-- The faults: inject(m, topic) and heal(m, topic); retriable: librdkafka
-- must deliver every message through it; stalls: partition 0 waits while
-- it lasts; may_fail, may_refuse: the error names a report, or produce,
-- may give; must_fail: partition 0's messages produced during it fail.
local FAULTS = {
  {
    name = "retriable errors pushed on Produce",
    retriable = true,
    inject = function(m)
      m:push_request_errors(0, "NOT_ENOUGH_REPLICAS", "REQUEST_TIMED_OUT", "NOT_LEADER_FOR_PARTITION",
        "NOT_ENOUGH_REPLICAS_AFTER_APPEND")
    end,
    heal = function() end,
  },
  {
    name = "a non-retriable error pushed on Produce",
    retriable = false,
    may_fail = { TOPIC_AUTHORIZATION_FAILED = true },
    -- librdkafka then marks the topic failed until its next metadata:
    -- produce refuses (nil, message, name), queueing nothing
    may_refuse = { TOPIC_AUTHORIZATION_FAILED = true },
    inject = function(m) m:push_request_errors(0, "TOPIC_AUTHORIZATION_FAILED") end,
    heal = function() end,
  },
  {
    name = "the leader's broker down, then up",
    retriable = true,
    stalls = true,
    inject = function(m) m:broker_down(FAULTY) end,
    heal = function(m) m:broker_up(FAULTY) end,
  },
  {
    name = "a leader change",
    retriable = true,
    inject = function(m, topic) assert(m:partition_set_leader(topic, 0, HEALTHY)) end,
    heal = function() end,
  },
  {
    name = "a raised round-trip time",
    retriable = true,
    stalls = true,
    inject = function(m) m:broker_set_rtt(FAULTY, 400) end,
    heal = function(m) m:broker_set_rtt(FAULTY, 0) end,
  },
  {
    name = "message.timeout.ms expiring on a leaderless partition",
    retriable = false,
    stalls = true,
    timeout_ms = 500,
    may_fail = { _MSG_TIMED_OUT = true },
    must_fail = true,         -- partition 0's messages produced during the fault
    inject = function(m, topic) assert(m:partition_set_leader(topic, 0, -1)) end,
    heal = function(m, topic) assert(m:partition_set_leader(topic, 0, FAULTY)) end,
  },
}

-- What close may fail a message with, besides the fault's own errors.
local PURGED = { _PURGE_QUEUE = true, _PURGE_INFLIGHT = true, _MSG_TIMED_OUT = true }

local function wait(p, cond, timeout)
  return H.wait_until(cond, timeout or 10, function() p:poll(0.02) end)
end

-- One case: a producer, N messages around the fault, the ending.
-- Returns what the assertions need.
local function run_case(m, fault, idempotence, ending)
  local topic = H.topic("fault")
  assert.is_true(m:create_topic(topic, 2, 3))
  assert.is_true(m:partition_set_leader(topic, 0, FAULTY))
  assert.is_true(m:partition_set_leader(topic, 1, HEALTHY))

  local c = { topic = topic, reports = {}, errors = {}, refused = {}, produced = 0 }
  local log = H.recorder()
  c.log = log
  local p = H.producer(m, { logger = log.fn, config = {
    ["enable.idempotence"] = idempotence,
    ["linger.ms"] = 2,
    ["message.timeout.ms"] = fault.timeout_ms or 10000,
    ["retry.backoff.ms"] = 20,
    ["reconnect.backoff.ms"] = 10, ["reconnect.backoff.max.ms"] = 100,
    ["topic.metadata.refresh.interval.ms"] = 200,
  } })

  local function on_delivery_for(id)
    return function(err, r)
      c.reports[id] = (c.reports[id] or 0) + 1
      c.errors[id] = err and r.error or false
    end
  end
  local function produce(from, to)
    for id = from, to do
      local ok, msg, name = p:produce(topic, "k" .. id, "id-" .. id,
        { partition = id % 2, on_delivery = on_delivery_for(id) })
      if not ok then
        assert.truthy((fault.may_refuse or {})[name], ("produce %d: %s (%s)"):format(id, tostring(msg), tostring(name)))
        c.refused[id] = name
      end
      c.produced = id
    end
  end
  local function all_reported(from, to, partition)
    return function()
      for id = from, to do
        if (partition == nil or id % 2 == partition) and not c.reports[id] and not c.refused[id] then
          return false
        end
      end
      return true
    end
  end

  local third = math.floor(N / 3)
  produce(1, third)
  assert.is_true(wait(p, all_reported(1, third)), "the first messages were not delivered")
  fault.inject(m, topic)
  produce(third + 1, 2 * third)
  -- the healthy partition keeps going meanwhile: wait for its messages,
  -- so the faulty partition's have been tried under the fault
  assert.is_true(wait(p, all_reported(third + 1, 2 * third, 1)), "partition 1 stalled")
  if fault.must_fail then       -- wait for the expiry itself
    assert.is_true(wait(p, all_reported(third + 1, 2 * third, 0), 10), "no message timed out")
  end

  if ending == "close" then
    p:close(0.2)
    c.flushed = true
  else
    local ok, msg, _, err = p:flush(0.2)
    local left = err and err.queued
    c.flush_during = { ok, msg, left, p:queue_length() }
    fault.heal(m, topic)
    produce(2 * third + 1, N)
    c.flushed = p:flush(10)
    p:close()
  end
  fault.heal(m, topic)
  return c
end

-- Asserts each id 1..c.produced that produce accepted has exactly one
-- report, and each it refused none; returns the failures' counts by
-- error name.
local function assert_one_report_each(c, allowed)
  local failed = {}
  for id = 1, c.produced do
    local want = c.refused[id] and 0 or 1
    assert.equal(want, c.reports[id] or 0, ("message %d: %s report(s)"):format(id, tostring(c.reports[id])))
    local name = c.errors[id]
    if name then
      assert.truthy(allowed[name], ("message %d failed with %s"):format(id, name))
      failed[name] = (failed[name] or 0) + 1
    end
  end
  for id in pairs(c.reports) do assert.truthy(id >= 1 and id <= c.produced, "report for unknown id " .. id) end
  return failed
end

-- ids read back with kcat: id -> how many times.
local function read_back(m, topic)
  local seen = {}
  for _, rec in ipairs(H.kcat_read(m:bootstraps(), topic, 30)) do
    local id = tonumber(rec.value:match("^id%-(%d+)$"))
    seen[id] = (seen[id] or 0) + 1
  end
  return seen
end

describe("faults on the mock cluster", function()
  local m
  setup(function() m = producers.mock_cluster(3) end)
  teardown(function() m:close() end)

  for _, fault in ipairs(FAULTS) do
    for _, idempotence in ipairs({ false, true }) do
      for _, ending in ipairs({ "flush, heal", "close" }) do
        local name = ("%s, idempotence %s, %s during the fault"):format(fault.name,
          idempotence and "on" or "off", ending == "close" and "close" or "flush then heal")
        it(name, function()
          local c = run_case(m, fault, idempotence, ending)
          local allowed = {}
          for k in pairs(fault.may_fail or {}) do allowed[k] = true end
          if ending == "close" then for k in pairs(PURGED) do allowed[k] = true end end

          assert.truthy(c.flushed, "flush did not finish: " .. c.log.text())
          local failed = assert_one_report_each(c, allowed)
          if ending ~= "close" then
            local ok, msg, left, queued = unpack(c.flush_during, 1, 4)
            if ok == nil then      -- timed out: says how many wait, and they do
              assert.equal("timed out", msg)
              assert.equal(queued, left)
              assert.truthy(left > 0)
            else
              assert.is_true(ok)
            end
            -- the fault did hold partition 0 up (for must_fail, until the expiry)
            if fault.stalls and not fault.must_fail then assert.is_nil(ok, "flush did not wait") end
            if fault.retriable then assert.same({}, failed) end
            if fault.must_fail then assert.truthy(failed._MSG_TIMED_OUT) end
          end
          -- close came while partition 0 waited: it purged what waited
          if ending == "close" and fault.stalls and not fault.must_fail then
            assert.truthy(failed._PURGE_QUEUE or failed._PURGE_INFLIGHT, "close purged nothing")
          end
          -- an idempotent producer never hit a fatal error here
          if idempotence then assert.is_nil(c.log.find("^fatal error"), c.log.text()) end

          local on_broker = read_back(m, c.topic)
          for id = 1, c.produced do
            local n = on_broker[id] or 0
            if c.refused[id] then
              assert.equal(0, n, ("message %d refused, on the broker"):format(id))
            elseif not c.errors[id] then
              -- delivered: on the broker, once with idempotence
              assert.truthy(n >= 1, ("message %d reported delivered, not on the broker"):format(id))
              if idempotence then assert.equal(1, n, ("message %d on the broker %d times"):format(id, n)) end
            elseif idempotence then
              assert.truthy(n <= 1, ("message %d failed, on the broker %d times"):format(id, n))
            end
          end
        end)
      end
    end
  end
end)

describe("a fatal error of the idempotent producer", function()
  -- A sequence desync is what idempotence cannot resolve without a gap
  -- or a duplicate: librdkafka stops the producer (docs/configuration.md, "Default
  -- configuration"). No message is left without its report.
  it("fails what waits, once each, logs it, and makes produce return _FATAL", function()
    local m = producers.mock_cluster(1)
    local topic = H.topic("fatal")
    assert.is_true(m:create_topic(topic, 1, 1))
    local log = H.recorder()
    local reports = {}
    local p = H.producer(m, { logger = log.fn, config = { ["linger.ms"] = 2 },
      on_delivery = function(err, r)
        local id = tonumber(r.value)
        assert.is_nil(reports[id], "two reports for " .. id)
        reports[id] = r.error or "delivered"
      end })
    for id = 1, 5 do assert.is_true(p:produce(topic, "k", tostring(id))) end
    assert.is_true(p:flush(10))
    m:push_request_errors(0, "OUT_OF_ORDER_SEQUENCE_NUMBER")
    for id = 6, 10 do assert.is_true(p:produce(topic, "k", tostring(id))) end
    assert.is_true(p:flush(10))
    local ok, message, name, err = p:produce(topic, "k", "11")
    assert.same({ nil, "Local: Fatal error", "_FATAL" }, { ok, message, name })
    assert.same({ "OUT_OF_ORDER_SEQUENCE_NUMBER", true }, { err.name, err.fatal })
    assert.equal(1, err.message:find("fatal error: ProduceRequest for " .. topic, 1, true))
    p:close()
    m:close()
    for id = 1, 10 do
      assert.equal(id <= 5 and "delivered" or "OUT_OF_ORDER_SEQUENCE_NUMBER", reports[id], "message " .. id)
    end
    assert.is_nil(reports[11])
    assert.truthy(log.find("^fatal error: .*sequence desynchronization", "error"), log.text())
  end)
end)

describe("mock_cluster's argument checks", function()
  local m
  setup(function() m = producers.mock_cluster(3) end)
  teardown(function() m:close() end)

  -- a method call's error names arguments after self: #1 is the first
  local function refused(f, message)
    local ok, err = pcall(f)
    assert.is_false(ok)
    assert.equal(message, (tostring(err):gsub("^[^:]*:%d+: ", "")))
  end

  it("refuses partition counts and replication factors out of range, and fractions", function()
    refused(function() m:create_topic("t", -1, 1) end,
      "bad argument #2 to 'create_topic' (partitions must be between 1 and 100000, got -1)")
    refused(function() m:create_topic("t", 0) end,
      "bad argument #2 to 'create_topic' (partitions must be between 1 and 100000, got 0)")
    refused(function() m:create_topic("t", 2 ^ 32 + 1) end,
      "bad argument #2 to 'create_topic' (partitions must be between 1 and 100000, got 4294967297)")
    refused(function() m:create_topic("t", 1.5) end,
      "bad argument #2 to 'create_topic' (partitions must be an integer, got 1.5)")
    refused(function() m:create_topic("t", 1, 0) end,
      "bad argument #3 to 'create_topic' (replication factor must be between 1 and 3, got 0)")
    refused(function() m:create_topic("t", 1, 4) end,
      "bad argument #3 to 'create_topic' (replication factor must be between 1 and 3, got 4)")
  end)

  it("refuses topic names with a NUL byte, and empty ones", function()
    refused(function() m:create_topic("a\0b", 1, 1) end,
      "bad argument #1 to 'create_topic' (topic name must not contain a NUL byte)")
    refused(function() m:create_topic("", 1, 1) end,
      "bad argument #1 to 'create_topic' (topic name must not be empty)")
    refused(function() m:topic_set_error("a\0b", "TOPIC_AUTHORIZATION_FAILED") end,
      "bad argument #1 to 'topic_set_error' (topic name must not contain a NUL byte)")
    refused(function() m:partition_set_leader("a\0b", 0, 1) end,
      "bad argument #1 to 'partition_set_leader' (topic name must not contain a NUL byte)")
  end)

  it("refuses broker ids it does not have (-1 is every broker)", function()
    refused(function() m:broker_down(0) end,
      "bad argument #1 to 'broker_down' (broker id (or -1) must be between 1 and 3, got 0)")
    refused(function() m:broker_up(4) end,
      "bad argument #1 to 'broker_up' (broker id (or -1) must be between 1 and 3, got 4)")
    refused(function() m:broker_set_rtt(9, 10) end,
      "bad argument #1 to 'broker_set_rtt' (broker id (or -1) must be between 1 and 3, got 9)")
    refused(function() m:partition_set_leader("t", 0, 4) end,
      "bad argument #3 to 'partition_set_leader' (broker id (or -1) must be between 1 and 3, got 4)")
    m:broker_down(-1)
    m:broker_up(-1)
    m:broker_set_rtt(-1, 0)
  end)

  it("refuses other numbers out of range", function()
    refused(function() m:broker_set_rtt(1, -5) end,
      "bad argument #2 to 'broker_set_rtt' (round-trip time (ms) must be between 0 and 3600000, got -5)")
    refused(function() m:partition_set_leader("t", -1, 1) end,
      "bad argument #2 to 'partition_set_leader' (partition must be between 0 and 99999, got -1)")
    refused(function() m:push_request_errors(-1, "NOT_LEADER_FOR_PARTITION") end,
      "bad argument #1 to 'push_request_errors' (api key must be between 0 and 32767, got -1)")
    refused(function() producers.mock_cluster(0) end,
      "bad argument #1 to 'mock_cluster' (brokers must be between 1 and 64, got 0)")
    refused(function() producers.mock_cluster(65) end,
      "bad argument #1 to 'mock_cluster' (brokers must be between 1 and 64, got 65)")
  end)

  -- the first three values: nil, message, name (an error object follows)
  local function refusal(ok, message, name) return { ok, message, name } end

  it("returns librdkafka's refusals as nil, message, name", function()
    local topic = H.topic("checks")
    assert.is_true(m:create_topic(topic, 2, 3))
    assert.same({ nil, "Broker: Topic already exists", "TOPIC_ALREADY_EXISTS" }, refusal(m:create_topic(topic, 2, 3)))
    assert.is_true(m:partition_set_leader(topic, 1, 2))
    assert.same({ nil, "Broker: Unknown topic or partition", "UNKNOWN_TOPIC_OR_PART" },
      refusal(m:partition_set_leader(topic, 2, 2)))
  end)
end)
