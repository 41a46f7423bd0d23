-- producers-cat (bin/producers-cat) and the signal pattern of
-- docs/signals.md (examples/signals.lua) against a real broker, read back
-- with kcat (issue #20):
-- * every line on the broker, in order, -k keys from a JSON field, -X
--   reaching librdkafka, SASL_SSL with -u/-p, a summary;
-- * a failure (a missing topic, a line over message.max.bytes) makes the
--   exit status 1;
-- * SIGTERM mid-stream loses nothing accepted: the issue measured a
--   stdin-to-Kafka script losing >= 17,907 accepted messages to SIGTERM;
--   with the documented pattern, and with producers-cat, every message
--   counted as accepted (delivered) is on the broker, exit status 143.
local K = require("integration.kafka_helpers")
local child = require("support.child")
local C = require("support.cat")

local q = K.q

local cat, summary, unsent = C.run, C.summary, C.unsent

-- values 1..n in offset order, each once (a single partition)
local function assert_sequence(records, n)
  assert.equal(n, #records)
  for i, r in ipairs(records) do
    if r.value ~= tostring(i) then
      error(("record %d (offset %d) is %q, not %d"):format(i, r.offset, tostring(r.value), i))
    end
  end
end

describe("producers-cat and the signal pattern on a real broker #integration", function()
  local env, c
  setup(function() env = K.broker_env() end)
  after_each(function()
    if c then c:cleanup() end
    c = nil
  end)

  local function brokers() return q(env.KAFKA_BOOTSTRAP) .. " -X broker.address.family=v4" end

  K.it("produces every line in order; kcat reads them back; summary, exit 0", function()
    local topic = K.topic("cat")
    K.create_topic(topic, 1)
    local input = {}
    for i = 1, 20000 do input[i] = tostring(i) end
    local out, status = cat(("-b %s -t %s"):format(brokers(), q(topic)), table.concat(input, "\n") .. "\n")
    assert.equal(0, status, out)
    assert.same({ 20000, 20000, 0 }, { summary(out) })
    assert_sequence(K.kcat_read(topic), 20000)
  end)

  K.it("-k keys each message with its JSON line's field; -X reaches librdkafka", function()
    local topic = K.topic("cat-key")
    K.create_topic(topic, 3)
    local input = {}
    for i = 1, 300 do input[i] = ('{"user":"u%d","n":%d}'):format(i % 7, i) end
    local out, status = cat(("-b %s -t %s -k user -X compression.type=lz4 -X linger.ms=50 -X client.id=cat-spec")
      :format(brokers(), q(topic)), table.concat(input, "\n") .. "\n")
    assert.equal(0, status, out)
    local got = K.kcat_read(topic)
    assert.equal(300, #got)
    local partition_of = {}
    for _, r in ipairs(got) do
      local user = r.value:match('"user":"(u%d)"')
      assert.equal(user, r.key)
      -- librdkafka's partitioner: one key, one partition
      assert.equal(partition_of[user] or r.partition, r.partition)
      partition_of[user] = r.partition
    end
  end)

  K.it("SASL_SSL with -u and -p, as the library does", function()
    local topic = K.topic("cat-sasl")
    K.create_topic(topic, 1)
    local out, status = cat(("-b %s -t %s -u %s -p %s -X ssl.ca.location=%s -X broker.address.family=v4")
      :format(q(env.KAFKA_SASL_BOOTSTRAP), q(topic), q(env.KAFKA_PLAIN_USER), q(env.KAFKA_PLAIN_PASSWORD),
              q(env.KAFKA_CA)), "one\ntwo\n")
    assert.equal(0, status, out)
    local got = K.kcat_read(topic, "plain")
    assert.same({ "one", "two" }, { got[1].value, got[2].value })
  end)

  K.it("a failure makes the exit status 1 and names its reason: a missing topic, a line too large", function()
    local out, status = cat(("-b %s -t %s -X message.timeout.ms=3000"):format(brokers(), q(K.topic("cat-missing"))),
      "a\nb\n")
    assert.equal(1, status, out)
    assert.same({ 2, 0, 2 }, { summary(out) })
    assert.matches("x not delivered: ", out, 1, true)
    local topic = K.topic("cat-large")
    K.create_topic(topic, 1)
    out, status = cat(("-b %s -t %s -X message.max.bytes=1000"):format(brokers(), q(topic)),
      "small\n" .. ("x"):rep(2000) .. "\nsmall\n")
    assert.equal(1, status, out)
    assert.same({ 3, 2, 1 }, { summary(out) })
    assert.matches("line 2: refused: MSG_SIZE_TOO_LARGE", out, 1, true)
    assert.equal(2, #K.kcat_read(topic))
  end)

  -- the issue's measurement, reversed
  K.it("SIGTERM mid-stream, documented pattern: every message it accepted is on the broker, exit 143", function()
    local topic = K.topic("sig-pattern")
    K.create_topic(topic, 1)
    c = child.start{ script = "examples/signals.lua", args = { env.KAFKA_BOOTSTRAP, topic },
                     stdin = "seq 1 5000000" }
    assert.truthy(c:wait_for(function() return c:bytes_read() > 1000000 or c:exited() end, 60),
      "it read nothing: " .. c:output())
    c:kill("TERM")
    local status = c:wait(30)
    assert.equal(143, status, c:output())
    local accepted, delivered, failed = c:stderr():match("accepted (%d+), delivered (%d+), failed (%d+)")
    accepted, delivered, failed = tonumber(accepted), tonumber(delivered), tonumber(failed)
    assert.is_truthy(accepted, c:output())
    assert.is_true(accepted > 17907 and accepted < 5000000, c:output())
    assert.same({ accepted, 0 }, { delivered, failed })
    assert_sequence(K.kcat_read(topic, nil, 180), accepted)
  end)

  K.it("SIGTERM mid-stream, producers-cat: stops reading, nothing it sent lost, summary, exit 143", function()
    local topic = K.topic("cat-sigterm")
    K.create_topic(topic, 1)
    c = child.start{ script = "bin/producers-cat", stdin = "seq 1 5000000",
                     args = { "-b", env.KAFKA_BOOTSTRAP, "-t", topic, "-X", "broker.address.family=v4" } }
    assert.truthy(c:wait_for(function() return c:bytes_read() > 1000000 or c:exited() end, 60),
      "it read nothing: " .. c:output())
    local sent = c:kill("TERM")
    local status = c:wait(30)
    assert.equal(143, status, c:output())
    assert.is_true(child.now() - sent < 6, ("%.1f s"):format(child.now() - sent))   -- -T 5
    local read, delivered, failed = summary(c:stderr())
    assert.matches(", stopped by SIGTERM", c:stderr(), 1, true)
    assert.same({ read - unsent(c:stderr()), 0 }, { delivered, failed })
    assert.is_true(read > 17907 and read < 5000000, c:output())
    assert_sequence(K.kcat_read(topic, nil, 180), delivered)
  end)
end)
