-- profile.lua - a fixed amount of the benchmark's work, for instruction
-- counts under valgrind (callgrind) or perf: N messages to librdkafka's
-- mock cluster in this process, then flush.
--
--   valgrind --tool=callgrind --separate-threads=yes \
--     lua5.4 bench/profile.lua tables|report|strings [N]
--
-- tables   a fresh table per message, on_delivery(err) counts (as (b))
-- report   the same, on_delivery(err, report) reads report.offset
-- strings  pre-encoded strings, no callback (as (c))
local producers = require("producers")

local mode, n = arg[1] or "tables", tonumber(arg[2] or "") or 100000
local delivered = 0
local on_delivery = ({
  tables = function(err) if not err then delivered = delivered + 1 end end,
  report = function(err, report) if not err and report.offset then delivered = delivered + 1 end end,
})[mode]

local p = assert(producers.kafka.new{
  config = { ["test.mock.num.brokers"] = 3 },
  log_level = "warn",
  on_delivery = on_delivery,
})

local keys, encoded = {}, {}
for k = 0, 999 do
  keys[k] = "user-" .. k
  encoded[k] = string.format(
    '{"event":"user_signup","user_id":%d,"ts":%d,"tags":["a","b","c"],"ok":true}',
    10000 + k, 1700000000000 + k)
end

for i = 0, n - 1 do
  local k = i % 1000
  local value = encoded[k]
  if mode ~= "strings" then
    value = { event = "user_signup", user_id = 10000 + k, ts = 1700000000000 + k,
              tags = { "a", "b", "c" }, ok = true }
  end
  while true do
    local ok, err, code = p:produce("bench", keys[k], value)
    if ok then break end
    assert(code == "_QUEUE_FULL", err)
    p:poll(0.1)
  end
  if i % 1024 == 0 then p:poll(0) end
end
assert(p:flush(60), "flush timed out")
if on_delivery then assert(delivered == n, ("delivered %d of %d"):format(delivered, n)) end
p:close()
print(("profile: %s, %d messages"):format(mode, n))
