-- Run by examples/embed/host.c: produces to librdkafka's mock cluster
-- and prints what was delivered.
local producers = require("producers")
local delivered = 0
local p = producers.kafka.new{
  config = { ["test.mock.num.brokers"] = 1 },
  log_level = "warn",
  on_delivery = function(err) if not err then delivered = delivered + 1 end end,
}
for i = 1, 3 do assert(p:produce("embedded", "k" .. i, { n = i })) end
assert(p:flush(10))
p:close()
print(("embedded producers %s: delivered %d (module from %s)")
  :format(producers.version, delivered, package.searchpath("producers", package.path) or "preload"))
