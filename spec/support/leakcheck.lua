-- Every producing path once, for valgrind (spec/core/memory_safety_spec.lua):
-- tables, strings (large ones lent), tombstones, headers, per-message
-- callbacks (with and without a report), a raising
-- callback, bad input, a full queue, purge on close, collection without
-- close, statistics (on_stats raising once, metrics(), the JSON decoder
-- on good and bad text), the mock cluster, errors as values, purge, a
-- fatal error. Exits 0 when all went as expected.
local producers = require("producers")

local m = producers.mock_cluster(1)
local delivered, failed = 0, 0
local function count(err) if err then failed = failed + 1 else delivered = delivered + 1 end end
-- a callback that takes the report (count alone takes none: none is built)
local function count_report(err, r) assert(r.topic) count(err) end

local p = producers.kafka.new{ bootstrap_servers = m:bootstraps(), on_delivery = count,
                               logger = function() end }
for i = 1, 300 do
  assert(p:produce("leak", "k" .. i, { i = i, tags = { "a", "b" } }, { headers = { h = "v" } }))
  assert(p:produce("leak", nil, "raw\0bytes", { on_delivery = count_report }))
  assert(p:produce("leak", "tomb", nil))
end
for i = 1, 20 do        -- large strings: lent to librdkafka, not copied
  assert(p:produce("leak", "big", string.rep("b", 2000) .. i, { on_delivery = count_report }))
end
assert(not pcall(p.produce, p, "leak", "k", { f = print }))
assert(not pcall(p.produce, p, "leak", "k", "v", { headers = { a = 1 } }))
assert(not pcall(p.produce, p, "leak", "k", "v", { on_delivery = 1, partition = 0.5 }))
assert(p:flush(30))

local raised = producers.kafka.new{ bootstrap_servers = m:bootstraps(),
                                    on_delivery = function() error("boom") end }
for i = 1, 5 do assert(raised:produce("leak", "k", "v", { on_delivery = i % 2 == 0 and count or nil })) end
assert(raised:produce("leak", "k", string.rep("r", 2000), { on_delivery = function() error("lent") end }))
while not pcall(raised.flush, raised, 30) do end
raised:close()

local full = producers.kafka.new{ bootstrap_servers = "127.0.0.1:1", logger = function() end,
                                  config = { ["queue.buffering.max.messages"] = 2 } }
assert(full:produce("t", "k", "v", { on_delivery = count_report }))
assert(full:produce("t", "k", "v"))
assert(full:produce("t", "k", "v", { on_delivery = count }) == nil)
assert(full:produce("t", "k", string.rep("f", 3000)) == nil)   -- refused while full
full:close(0.1)

local dropped = producers.kafka.new{ bootstrap_servers = "127.0.0.1:1", gc_flush_timeout = 0.1 }
assert(dropped:produce("t", "k", "v", { on_delivery = count }))
assert(dropped:produce("t", "k", string.rep("d", 3000)))
dropped = nil
collectgarbage()

-- delivery.report.only.error (successes released in C), reports as
-- values, a Lua encoder, re-producing from callbacks, secrets redacted
local only = producers.kafka.new{ bootstrap_servers = m:bootstraps(), serve_on_produce = false,
  json = function(v) return "encoded" end, logger = function() end,
  config = { ["delivery.report.only.error"] = true, ["sasl.password"] = "hunter2-secret" } }
for i = 1, 20 do assert(only:produce("leak", "k", string.rep("o", 1500), { on_delivery = count })) end
assert(only:produce("leak", "k", { t = 1 }))
assert(only:flush(30))
only:close()
local values = producers.kafka.new{ bootstrap_servers = m:bootstraps(), serve_on_produce = false }
for i = 1, 20 do assert(values:produce("leak", "k", string.rep("v", 1500), { on_delivery = count })) end
local taken, deadline = 0, os.time() + 60
while taken < 20 and os.time() < deadline do      -- reports() alone: poll would serve them
  for _, r in ipairs(values:reports(7)) do taken = taken + 1; r.on_delivery(r.err, r) end
  if taken < 20 then os.execute("sleep 0.05") end  -- valgrind runs one thread at a time:
end                                               -- a busy loop starves librdkafka's
assert(taken == 20, "reports taken: " .. taken)
values:close()
local retry
retry = producers.kafka.new{ bootstrap_servers = "127.0.0.1:1", logger = function() end,
  config = { ["message.timeout.ms"] = 20 },
  on_delivery = function(err, r) retry:produce("t", r.key, string.rep("x", 1200)) end }
for i = 1, 5 do assert(retry:produce("t", "k" .. i, "v")) end
retry:close(0.1)

-- errors as values: error objects in reports and refusals, on_error,
-- purge, poll with max_reports, a fatal error
local objects = 0
local purged
purged = producers.kafka.new{ bootstrap_servers = "127.0.0.1:1", logger = function() end,
  on_error = function(e) assert(e.name) end,
  on_delivery = function(err, r) if r.error_object then objects = objects + 1 end end }
for i = 1, 10 do assert(purged:produce("t", "k" .. i, string.rep("p", 1100 * (i % 2)))) end
assert(purged:purge())
while objects < 10 do purged:poll(0.05, 3) end
assert(select(4, purged:flush(0)) == nil)
require("producers.core").testing.fatal_error(purged, "_FENCED", "leakcheck")
assert(select(4, purged:produce("t", "k", "v")).fatal)
purged:close(0)
-- statistics: decoded for on_stats (which raises once) and metrics()
local stats_seen = 0
local stats = producers.kafka.new{ bootstrap_servers = m:bootstraps(),
  config = { ["statistics.interval.ms"] = 10 },
  on_stats = function(s, json)
    stats_seen = stats_seen + 1
    if stats_seen == 1 then error("stats") end
    assert(s.type == "producer" and #json > 0)
  end }
for i = 1, 20 do
  -- produce queues, then serves what is ready: on a slow run (valgrind on
  -- a loaded machine) that can be the first statistics, whose callback
  -- raises; the error comes out of produce, the message queued
  local ok, err = pcall(stats.produce, stats, "leak", "k", "v" .. i)
  assert(ok or tostring(err):find("stats", 1, true), err)
end
deadline = os.time() + 60
while stats_seen < 3 and os.time() < deadline do
  pcall(stats.poll, stats, 0.05)
end
assert(stats_seen >= 3, "on_stats calls: " .. stats_seen)
assert(stats:flush(30))
assert(stats:metrics().delivered.messages == 20)
stats:close()
local core = require("producers.core")
for _, text in ipairs{ '{"a":[1,2.5,"\\u00e9\\ud83d\\ude00"]}', '"abc\\', '[1,', '"\\ud83d"' } do
  core.json_decode(text)
end

p:close()
m:close()
collectgarbage()
assert(delivered == 900 + 20 + 2 + 20, "delivered " .. delivered)
print(("leakcheck: %d delivered, %d failed"):format(delivered, failed))
