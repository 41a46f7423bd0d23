-- A topic that does not exist, on a broker with auto.create.topics.enable
-- false. librdkafka 2.0.2 asks for the topic's metadata, learns it is
-- unknown and waits topic.metadata.propagation.max.ms (default 30 s) in
-- case it is being created; then it fails the messages with the broker's
-- UNKNOWN_TOPIC_OR_PART. A message whose message.timeout.ms ends first
-- fails with _MSG_TIMED_OUT. Either way each report says so, on partition
-- -1 (never assigned), within a bound, and other topics are not held up.
local producers = require("producers")
local K = require("integration.kafka_helpers")

describe("a topic that does not exist #integration", function()
  local env
  setup(function() env = K.broker_env() end)

  local function collector()
    local reports = {}
    return reports, function(err, r)
      r.err = err
      r.at = K.now()
      reports[#reports + 1] = r
    end
  end

  local function escape(s) return (s:gsub("%p", "%%%0")) end

  K.it("with message.timeout.ms (3 s) below the propagation wait: every report is _MSG_TIMED_OUT on partition -1, the default report names the topic", function()
    local topic = K.topic("missing")
    local log = K.recorder()
    local reports, on_delivery = collector()
    local p = producers.kafka.new{
      bootstrap_servers = env.KAFKA_BOOTSTRAP, logger = log.fn,
      config = { ["broker.address.family"] = "v4", ["message.timeout.ms"] = 3000 },
    }
    local t0 = K.now()
    for i = 1, 4 do
      assert.is_true(p:produce(topic, "k" .. i, { i = i }, { on_delivery = on_delivery }))
    end
    for i = 5, 6 do      -- these two go to the default report (the logger)
      assert.is_true(p:produce(topic, "k" .. i, { i = i }))
    end
    assert.is_true(p:flush(15))
    local elapsed = K.now() - t0
    assert.equal(4, #reports)
    for _, r in ipairs(reports) do
      assert.equal("Local: Message timed out", r.err)
      assert.equal("_MSG_TIMED_OUT", r.error)
      assert.equal(topic, r.topic)
      assert.equal(-1, r.partition)
      assert.equal(-1001, r.offset)
    end
    assert.is_true(elapsed >= 2.9 and elapsed < 3 + 3, ("reports after %.2fs"):format(elapsed))
    local want = "^delivery failed: " .. escape(topic) .. " %[%-1%]: Local: Message timed out %(_MSG_TIMED_OUT%)$"
    local n = 0
    for _, l in ipairs(log.lines) do
      if l[1] == "error" and l[2]:find(want) then n = n + 1 end
    end
    assert.equal(2, n, log.text())
    p:close()
    print(("\n  missing topic, message.timeout.ms 3000: all reports after %.2fs"):format(elapsed))
  end)

  K.it("with topic.metadata.propagation.max.ms 1000: every report is UNKNOWN_TOPIC_OR_PART, long before message.timeout.ms", function()
    local topic = K.topic("missing")
    local reports, on_delivery = collector()
    local p = producers.kafka.new{
      bootstrap_servers = env.KAFKA_BOOTSTRAP, on_delivery = on_delivery,
      logger = function() end,
      config = { ["broker.address.family"] = "v4", ["message.timeout.ms"] = 60000,
                 ["topic.metadata.propagation.max.ms"] = 1000 },
    }
    local t0 = K.now()
    for i = 1, 5 do assert.is_true(p:produce(topic, "k" .. i, "v" .. i)) end
    assert.is_true(p:flush(15))
    local elapsed = K.now() - t0
    assert.equal(5, #reports)
    local values = {}
    for _, r in ipairs(reports) do
      assert.equal("Broker: Unknown topic or partition", r.err)
      assert.equal("UNKNOWN_TOPIC_OR_PART", r.error)
      assert.equal(-1, r.partition)
      values[#values + 1] = r.value
    end
    table.sort(values)
    assert.same({ "v1", "v2", "v3", "v4", "v5" }, values)
    assert.is_true(elapsed < 6, ("reports after %.2fs"):format(elapsed))
    -- the producer still works for a topic that exists
    local good = K.topic("exists")
    K.create_topic(good, 1)
    assert.is_true(p:produce(good, "k", "v"))
    assert.is_true(p:flush(15))
    assert.is_nil(reports[6].err)
    p:close()
    print(("\n  missing topic, propagation wait 1000 ms: all reports after %.2fs"):format(elapsed))
  end)

  K.it("with the library's defaults: UNKNOWN_TOPIC_OR_PART after the 30 s propagation wait, while an existing topic delivers at once", function()
    local missing, good = K.topic("missing"), K.topic("exists")
    K.create_topic(good, 1)
    local reports, on_delivery = collector()
    local p = producers.kafka.new{
      bootstrap_servers = env.KAFKA_BOOTSTRAP, on_delivery = on_delivery, logger = function() end,
      config = { ["broker.address.family"] = "v4" },
    }
    local t0 = K.now()
    for i = 1, 3 do assert.is_true(p:produce(missing, "k" .. i, "v" .. i)) end
    -- the missing topic's messages do not hold up another topic's
    assert.is_true(p:produce(good, "k", "v"))
    assert.truthy(K.wait_for(function() return #reports >= 1 end, 10, p))
    assert.equal(good, reports[1].topic)
    assert.is_nil(reports[1].err)
    local t_good = reports[1].at - t0
    assert.is_true(t_good < 5)
    -- the missing topic's messages wait for it to appear, then fail
    assert.truthy(K.wait_for(function() return #reports == 4 end, 45, p),
      ("%d reports after %.1fs"):format(#reports, K.now() - t0))
    for i = 2, 4 do
      local r = reports[i]
      assert.equal(missing, r.topic)
      assert.equal("UNKNOWN_TOPIC_OR_PART", r.error)
      assert.equal("Broker: Unknown topic or partition", r.err)
    end
    local t_fail = reports[4].at - t0
    assert.is_true(t_fail > 25 and t_fail < 40, ("failed after %.1fs"):format(t_fail))
    p:close()
    print(("\n  missing topic, defaults: existing topic delivered after %.2fs, missing one failed after %.1fs")
      :format(t_good, t_fail))
  end)

  K.it("created while its messages wait (within the propagation wait): they are delivered", function()
    local topic = K.topic("late")
    local reports, on_delivery = collector()
    local log = K.recorder()
    local p = producers.kafka.new{
      bootstrap_servers = env.KAFKA_BOOTSTRAP, on_delivery = on_delivery, logger = log.fn,
      config = { ["broker.address.family"] = "v4" },
    }
    for i = 1, 20 do assert.is_true(p:produce(topic, "k" .. (i % 4), "v" .. i)) end
    -- wait until the producer has asked for the topic and been told it is
    -- missing: nothing is delivered yet
    assert.is_nil(p:flush(1))
    assert.equal(0, #reports)
    K.create_topic(topic, 2)
    assert.is_true(p:flush(30))
    assert.equal(20, #reports)
    for _, r in ipairs(reports) do assert.is_nil(r.err, tostring(r.err)) end
    p:close()
    local got = K.kcat_read(topic, "plaintext")
    assert.equal(20, #got)
  end)
end)
