-- Produces a few messages to a real broker, configured from the
-- environment, and prints each delivery report.
--
--   BOOTSTRAP=127.0.0.1:9092 TOPIC=events lua5.4 examples/produce.lua
--   with SASL_SSL: also USERNAME, PASSWORD, SASL_MECHANISM (default PLAIN)
--   and CA (the CA file for ssl.ca.location)
local producers = require("producers")

local env = os.getenv
local config = { ["broker.address.family"] = "v4" }
if env("CA") then config["ssl.ca.location"] = env("CA") end

local p = producers.kafka.new{
  bootstrap_servers = env("BOOTSTRAP") or "127.0.0.1:9092",
  username = env("USERNAME"), password = env("PASSWORD"),
  sasl_mechanism = env("SASL_MECHANISM"),
  config = config,
  on_delivery = function(err, r)
    if err then
      print(("failed: %s (%s)"):format(err, r.error))
    else
      print(("delivered %s to %s [%d] at offset %d"):format(r.key, r.topic, r.partition, r.offset))
    end
  end,
}
local topic = env("TOPIC") or "events"
for i = 1, 5 do
  assert(p:produce(topic, "user-" .. i, { event = "user_signup", user_id = i, ok = true }))
end
local ok, err, left = p:flush(30)
if not ok then print(("flush: %s, %d left"):format(err, left)) end
p:close()
