-- Run under valgrind by spec/nats/delivery_spec.lua (#valgrind): every
-- path of the NATS backend once against the server at $NATS_URL (a
-- stream capturing "leak.>" made by the spec): tables, strings, lent
-- values, headers, ids and duplicates, a subject without a stream, a
-- callback that raises, reports(), purge, a failed connect, a producer
-- left to the collector. Prints "nats_leakcheck: N delivered, M failed".
local producers = require("producers")
local url = assert(os.getenv("NATS_URL"), "NATS_URL")

local delivered, failed = 0, 0
local function count(err) if err then failed = failed + 1 else delivered = delivered + 1 end end

local p = assert(producers.nats.new({ servers = url, on_delivery = count }))
local big = ("x"):rep(2048)
for i = 1, 20 do
  assert(p:produce("leak.a", "k" .. i, { i = i, s = "v" }))
  assert(p:produce("leak.b", nil, big .. i, { headers = { h = "v" .. i }, id = "id-" .. (i % 5) }))
  assert(p:produce("nostream.leak", "k", "v", { on_delivery = function(err, r) count(err); assert(r.err_name) end }))
end
assert(p:produce("leak.a", "k", "v", { on_delivery = function() error("raised in a callback") end }))
assert(not pcall(p.flush, p, 10))
assert(p:flush(10))
p:close()

local q = assert(producers.nats.new({ servers = url, serve_on_produce = false }))
for i = 1, 10 do assert(q:produce("leak.c", "k", "v" .. i)) end
assert(q:purge())
for _ = 1, 100 do
  for _, r in ipairs(q:reports()) do count(r.err) end
  if q:queue_length() == 0 then break end
  q:poll(0.05)
end
q:close()

local none, msg, name = producers.nats.new({ servers = "nats://127.0.0.1:1", connect_timeout = 0.5 })
assert(none == nil and msg and name == "_NO_SERVER", tostring(msg))

local dropped = assert(producers.nats.new({ servers = url, gc_flush_timeout = 1 }))
for i = 1, 5 do assert(dropped:produce("leak.d", "k", "v" .. i)) end
dropped = nil
collectgarbage()
collectgarbage()
print(("nats_leakcheck: %d delivered, %d failed"):format(delivered, failed))
