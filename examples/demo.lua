-- producers demo: produces to librdkafka's built-in mock cluster, so no
-- broker is needed. Run with ./scripts/demo.sh
local producers = require("producers")

print(("producers %s on librdkafka %s"):format(producers.version, producers.librdkafka_version))

local p = producers.kafka.new{
  config = { ["test.mock.num.brokers"] = 3 },       -- instead of bootstrap_servers
  log_level = "warn",
  on_delivery = function(err, report)
    if err then
      print(("  failed: %s (%s)"):format(err, report.err_name))
    else
      print(("  delivered %-8s key=%-8s to %s [%d] at offset %d: %s"):format(
        report.value and "message" or "tombstone", tostring(report.key),
        report.topic, report.partition, report.offset, tostring(report.value)))
    end
  end,
}
print("producer:", p)

-- Tables go out as JSON, strings as they are, nil as a tombstone.
assert(p:produce("signups", "user-1", { event = "user_signup", user_id = 1, tags = { "a", "b" }, ok = true }))
assert(p:produce("signups", "user-2", '{"event":"user_signup","user_id":2}', { headers = { source = "demo" } }))
assert(p:produce("signups", "user-1", nil))

-- A callback for one message only.
assert(p:produce("audit", nil, { action = "login" }, {
  on_delivery = function(err, report)
    print(("  audit message: %s, offset %d"):format(err or "ok", report.offset))
  end,
}))

print("flushing...")
assert(p:flush(10))
p:close()
print("closed:", p)
