-- Produces a few messages to a real broker, configured from the
-- environment, prints each delivery report and a count; exits 1 when a
-- message failed.
--
--   scripts/kafka/broker.sh start                 # the project's broker: PLAINTEXT on 127.0.0.1:19092
--   scripts/kafka/broker.sh create-topic events   # topics are not created on first use
--   . /tmp/producers-kafka/env.sh                 # KAFKA_BOOTSTRAP, KAFKA_SASL_BOOTSTRAP, KAFKA_CA...
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" lua5.4 examples/produce.lua
--
-- BOOTSTRAP (default $KAFKA_BOOTSTRAP, else 127.0.0.1:19092), TOPIC
-- (default events); with SASL_SSL: also USERNAME, PASSWORD,
-- SASL_MECHANISM (default PLAIN) and CA (the CA file for ssl.ca.location).
-- docs/kafka.md tells more, and why a missing topic fails after 30 s.
local producers = require("producers")

local env = os.getenv
local config = { ["broker.address.family"] = "v4" }
if env("CA") then config["ssl.ca.location"] = env("CA") end

local delivered, failed = 0, 0
local p = producers.kafka.new{
  bootstrap_servers = env("BOOTSTRAP") or env("KAFKA_BOOTSTRAP") or "127.0.0.1:19092",
  username = env("USERNAME"), password = env("PASSWORD"),
  sasl_mechanism = env("SASL_MECHANISM"),
  config = config,
  on_delivery = function(err, r)
    if err then
      failed = failed + 1
      print(("failed: %s (%s)"):format(err, r.err_name))
    else
      delivered = delivered + 1
      print(("delivered %s to %s [%d] at offset %d"):format(r.key, r.topic, r.partition, r.offset))
    end
  end,
}
local topic = env("TOPIC") or "events"
for i = 1, 5 do
  assert(p:produce(topic, "user-" .. i, { event = "user_signup", user_id = i, ok = true }))
end
-- true once every report is served, delivered or not: the count says which
local ok, err, _, e = p:flush(60)
if not ok then print(("flush: %s, %d left"):format(err, e.queued)) end
p:close()
print(("%d delivered, %d failed"):format(delivered, failed))
os.exit(failed == 0 and ok and 0 or 1)
