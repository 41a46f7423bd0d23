-- The broker is down when the producer starts, then comes up: messages
-- produced meanwhile wait in the local queue and are all delivered, once,
-- within message.timeout.ms. This spec stops and restarts the single-node
-- broker (broker.sh start wipes its data, so topics are created after it);
-- whatever happens, it leaves a single-node broker running, as it found it.
local producers = require("producers")
local K = require("integration.kafka_helpers")

local TIMEOUT_MS = 60000     -- message.timeout.ms: the bound on the whole outage

K.describe_cluster("a broker down at start, then up #integration", 1, function()
  local env
  setup(function()
    env = K.env()
    assert(K.running(), "the single-node broker must be running before this spec")
  end)

  -- leave a running single-node broker behind, even when the test failed
  teardown(function()
    if not K.running() then
      local out, ok = K.broker("start")
      if not ok then io.stdout:write("\nbroker.sh start failed:\n", out, "\n") end
    end
  end)

  K.it("delivers every message queued while no broker listened, once, within message.timeout.ms", function()
    local port = tonumber(env.KAFKA_BOOTSTRAP:match(":(%d+)$"))
    K.must_broker("stop")
    assert.is_false(K.port_open(port), "the broker still listens on " .. port)

    local topic = K.topic("down")
    local log = K.recorder()
    local reports = {}
    local p = producers.kafka.new{
      bootstrap_servers = env.KAFKA_BOOTSTRAP, logger = log.fn,
      config = { ["broker.address.family"] = "v4", ["message.timeout.ms"] = TIMEOUT_MS },
      on_delivery = function(err, r)
        r.err = err
        r.at = K.now()
        reports[#reports + 1] = r
      end,
    }
    local n, keys = 600, 6
    local t_produce = K.now()
    for i = 1, n do
      local value = (i % 2 == 0) and { key = "key-" .. (i % keys), i = i } or ("key-%d|%05d"):format(i % keys, i)
      assert.is_true(p:produce(topic, "key-" .. (i % keys), value, { headers = { { "i", tostring(i) } } }))
    end
    -- the producer notices that nothing listens: an error line, no report
    local down = K.wait_for(function()
      return log.find("%(_ALL_BROKERS_DOWN%)$", "error") or log.find("%(_TRANSPORT%)$", "error")
    end, 10, p)
    assert.truthy(down, "no error logged while the broker is down:\n" .. log.text())
    assert.equal(0, #reports)
    assert.equal(n, p:queue_length())

    -- the broker comes up (os.execute: start blocks until it serves; the
    -- producer's own threads keep trying meanwhile), then the topic
    local t_up0 = K.now()
    local out, ok = K.broker("start")
    assert.is_true(ok, "broker.sh start failed:\n" .. out)
    local t_up = K.now()
    env = K.env()
    K.create_topic(topic, 3)
    local t_topic = K.now()

    assert.is_true(p:flush(TIMEOUT_MS / 1000), ("%d of %d reports"):format(#reports, n))
    local t_done = K.now()
    p:close()
    assert.equal(n, #reports)
    for _, r in ipairs(reports) do
      assert.is_nil(r.err, ("%s (%s)\n%s"):format(tostring(r.err), tostring(r.error), log.tail(30)))
    end
    assert.is_true(t_done - t_produce < TIMEOUT_MS / 1000)

    -- read back: every message once, in order per key, at the reported offsets
    local got = K.kcat_read(topic, "plaintext")
    assert.equal(n, #got)
    K.assert_read_back(reports, got)
    local last, seen = {}, {}
    for _, rec in ipairs(got) do
      local i = tonumber(rec.headers[1][2])
      assert.is_nil(seen[i], "duplicate " .. i)
      seen[i] = true
      assert.is_true(i > (last[rec.key] or 0), "out of order for " .. rec.key)
      last[rec.key] = i
    end
    print(("\n  broker down at start: %d messages queued; broker.sh start took %.1fs, topic created %.1fs later, "
      .. "all delivered %.1fs after the topic existed (%.1fs after produce)")
      :format(n, t_up - t_up0, t_topic - t_up, t_done - t_topic, t_done - t_produce))
  end)
end)
