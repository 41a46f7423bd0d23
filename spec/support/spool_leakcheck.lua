-- Every path of the spool's glue (core/spooling.c) once, for valgrind
-- (spec/spool/valgrind_spec.lua): produce with callbacks and headers,
-- refusals (full, too large), retriable reports kept from Lua and sent
-- again, close leaving records, a replay, an adoption, collection in the
-- middle of a replay. Prints "spool leakcheck: N delivered".
local producers = require("producers")

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  return d
end

local m = producers.mock_cluster(1)
local quiet = function() end
local a, b = tmpdir(), tmpdir()
local delivered = 0
local function new(dir, extra)
  local opts = { bootstrap_servers = m:bootstraps(), logger = quiet, spool = { dir = dir, max_bytes = 65536, segment_bytes = 8192 },
    on_delivery = function(err) if not err then delivered = delivered + 1 end end,
    config = { ["message.timeout.ms"] = 200 } }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return producers.kafka.new(opts)
end

-- an outage: timed out, resent, refused for full
m:broker_down(-1)
local p = new(a)
local n = 0
while p:produce("t", "k", ("v"):rep(100), { headers = { h = "x" }, on_delivery = function(err, r)
  if not err then delivered = delivered + 1 end
end }) do n = n + 1 end
assert(select(3, p:produce("t", nil, ("v"):rep(100))) == "SPOOL_FULL")
assert(select(3, p:produce("t", nil, ("big"):rep(5000))) == "MSG_SIZE_TOO_LARGE")
local t0 = os.time()
while p:metrics().spool.resent < n and os.time() - t0 < 30 do p:poll(0.05) end
p:close(0)                       -- leaves the records in a

-- a replay collected half way (the broker still down, so that none of
-- a's records is delivered, and acked unseen, by this producer: under
-- load it lived long enough to take some, and r's count fell to 41),
-- then a replay and an adoption
local q = new(a, { gc_flush_timeout = 0 })
q = nil
collectgarbage(); collectgarbage()
m:broker_up(-1)
local r = new(b)
assert(r:spool_adopt(a))
for i = 1, 10 do assert(r:produce("t", nil, "new" .. i, { on_delivery = function() end })) end
assert(r:flush(30))
r:close()
os.execute("rm -rf " .. a .. " " .. b)
m:close()
print(("spool leakcheck: %d delivered"):format(delivered))
