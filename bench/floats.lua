-- floats.lua - float-heavy tables: the builtin encoder against lua-cjson,
-- side by side in one run, encoding alone and encoding + produce.
-- bench/run.sh runs it under Lua 5.4 and LuaJIT (-F COUNT; -f for it alone); by hand:
--
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 bench/floats.lua [BOOTSTRAP|-|encode] [COUNT] [ROUNDS] [TOPIC]
--
-- (luajit with LUA_CPATH="build-luajit/?.so;;"). BOOTSTRAP: a broker (run.sh
-- passes its mock cluster's address); "-" or none: librdkafka's mock
-- cluster inside this process; "encode": encoding alone, no producer.
-- COUNT messages a run (default 20,000), ROUNDS rounds (default 3): each
-- round runs every shape with each encoder in turn, so a slow spell of
-- the machine weighs on both sides; the table shows the medians.
-- BENCH_CONFIG="name=value,..." adds librdkafka properties (run.sh's -X).
--
-- Shapes (64 different tables of each, made before timing):
--   doubles100  an array of 100 random doubles, (random() - 0.5) 10^e for
--               e in -3..6: 15 to 17 significant digits, as computed
--               values have
--   nested2k    a ~2 KB document: a device, its location and 12 readings of
--               five computed floats each, and summary statistics (78
--               floats, 14 objects, 3 levels)
--   prices100   an array of 100 decimals with two digits after the point
--               (19.99): the short floats people type, for comparison
-- Encoders: "builtin" (the library's, lossless: shortest round-trip digits)
-- and "lua-cjson" (json = "lua-cjson": %.14g, which loses digits).
--
-- Columns: encode alone (core.encode_value, which both encoders go
-- through: µs a table, ns a float), then produce (p:produce of the table,
-- the producer encoding with its json option; gzip, the library's
-- defaults): messages a second (delivered, first produce to last report),
-- the main thread's CPU µs a message (schedstat, else /proc's ticks) and
-- the other threads' (librdkafka's: gzip, mostly). With gzip on two cores
-- the other threads bound msg/s, and the lossless output is longer (17
-- digits where lua-cjson keeps 14): the main thread's CPU is the
-- encoders' difference, what an nginx worker pays.
local producers = require("producers")
local core = require("producers.core")

local encode_only = arg[1] == "encode"
local bootstrap = arg[1] ~= "-" and not encode_only and arg[1] or nil
local count = tonumber(arg[2] or "") or 20000
local rounds = tonumber(arg[3] or "") or 3
local topic = arg[4] or "bench"

local function slurp(path)
  local f = io.open(path)
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

local task = "/proc/self/task/" .. slurp("/proc/self/stat"):match("^(%d+)")

-- utime + stime of a /proc stat file, in seconds
local function stat_seconds(path)
  local fields = {}
  for f in slurp(path):gsub("^.-%) ", ""):gmatch("%S+") do fields[#fields + 1] = f end
  return (tonumber(fields[12]) + tonumber(fields[13])) / 100
end

-- CPU seconds of this (the main) thread: schedstat's nanoseconds where the
-- kernel keeps them, else utime + stime in clock ticks.
local function main_thread_cpu()
  local schedstat = slurp(task .. "/schedstat")
  if schedstat then return tonumber(schedstat:match("^(%d+)")) / 1e9 end
  return stat_seconds(task .. "/stat")
end

-- CPU seconds of the whole process (every thread): utime + stime in ticks.
local function process_cpu() return stat_seconds("/proc/self/stat") end

local now
do
  local ok, system = pcall(require, "system")
  if ok and type(system) == "table" and system.monotime then
    now = system.monotime
  else
    io.stderr:write("floats.lua: no monotonic clock: install lua-system (apt-get install lua-system)\n")
    os.exit(2)
  end
end

math.randomseed(20261129)
local random = math.random

local function doubles100()
  local t = {}
  for i = 1, 100 do t[i] = (random() - 0.5) * 10 ^ random(-3, 6) end
  return t, 100
end

local function prices100()
  local t = {}
  for i = 1, 100 do t[i] = (random(0, 999) * 100 + random(1, 99)) / 100 end   -- 19.99
  return t, 100
end

local site = 0
local function nested2k()
  site = site + 1
  local floats = 0
  local function f(x) floats = floats + 1; return x end
  local readings = {}
  local t0 = 1700000000 + random() * 1e6
  for j = 1, 12 do
    readings[j] = {
      t = f(t0 + j * 0.25 + random() * 1e-3),
      temperature = f(20 + random() * 5),
      humidity = f(40 + random() * 20),
      pressure = f(1013 + (random() - 0.5) * 10),
      voltage = f(3.3 + (random() - 0.5) * 0.1),
    }
  end
  local doc = {
    device = "sensor-" .. site,
    firmware = "4.2.1",
    location = { lat = f(48.8566 + random() * 0.01), lon = f(2.3522 + random() * 0.01),
                 altitude = f(35 + random() * 3) },
    readings = readings,
    stats = { temperature = { min = f(20 + random()), max = f(24 + random()), mean = f(22 + random()),
                              stddev = f(random()) },
              humidity = { min = f(40 + random()), max = f(59 + random()), mean = f(50 + random()),
                           stddev = f(random() * 5) },
              pressure = { min = f(1008 + random()), max = f(1017 + random()), mean = f(1013 + random()),
                           stddev = f(random() * 2) } },
    ok = true,
  }
  return doc, floats
end

local SHAPES = {
  { name = "doubles100", make = doubles100 },
  { name = "nested2k", make = nested2k },
  { name = "prices100", make = prices100 },
}
local ENCODERS = { "builtin", "lua-cjson" }
local POOL = 64

for _, shape in ipairs(SHAPES) do
  shape.pool = {}
  for i = 1, POOL do shape.pool[i], shape.floats = shape.make() end
  shape.bytes = #core.encode_value(shape.pool[1])
end

local function median(list)
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  return s[math.floor((#s + 1) / 2)]
end

-- Encoding alone: µs a table, of the process's CPU time (os.clock: no
-- other thread runs then, and it counts microseconds where /proc's ticks
-- are 10 ms).
local function encode_run(shape, encoder)
  local pool, json = shape.pool, encoder ~= "builtin" and encoder or nil
  local n = math.max(count, 2000)
  for i = 1, 1000 do core.encode_value(pool[i % POOL + 1], json) end    -- warm (JIT, buffers)
  local cpu0 = os.clock()
  for i = 1, n do core.encode_value(pool[i % POOL + 1], json) end
  return (os.clock() - cpu0) * 1e6 / n
end

-- Encoding + produce: msg/s and main thread µs a message.
local function produce_run(shape, encoder)
  local delivered, failed = 0, 0
  local config = bootstrap and {} or { ["test.mock.num.brokers"] = 1 }
  for name, value in (os.getenv("BENCH_CONFIG") or ""):gmatch("([^=,]+)=([^,]*)") do
    config[name] = value
  end
  local p = assert(producers.kafka.new{
    bootstrap_servers = bootstrap,
    config = config,
    log_level = "warn",
    json = encoder ~= "builtin" and encoder or nil,
    on_delivery = function(err) if err == nil then delivered = delivered + 1 else failed = failed + 1 end end,
  })
  local pool = shape.pool
  for i = 1, 1000 do assert(p:produce(topic, "k" .. i % 16, pool[i % POOL + 1])) end
  assert(p:flush(30))
  delivered, failed = 0, 0
  local cpu0, all0, t0 = main_thread_cpu(), process_cpu(), now()
  for i = 1, count do
    local value = pool[i % POOL + 1]
    while true do
      local ok, err, code = p:produce(topic, nil, value)
      if ok then break end
      assert(code == "_QUEUE_FULL", err)
      p:poll(0.01)
    end
    if i % 1024 == 0 then p:poll(0) end
  end
  while not p:flush(1) do end
  local seconds, cpu, all = now() - t0, main_thread_cpu() - cpu0, process_cpu() - all0
  p:close()
  assert(failed == 0 and delivered == count, ("%d delivered, %d failed"):format(delivered, failed))
  return delivered / seconds, cpu * 1e6 / count, math.max(0, all - cpu) * 1e6 / count
end

local results = {}
for _, shape in ipairs(SHAPES) do
  results[shape.name] = {}
  for _, encoder in ipairs(ENCODERS) do results[shape.name][encoder] = { enc = {}, rate = {}, cpu = {}, other = {} } end
end
for round = 1, rounds do
  io.stderr:write(("floats.lua: round %d of %d\n"):format(round, rounds))
  for _, shape in ipairs(SHAPES) do
    for _, encoder in ipairs(ENCODERS) do
      local r = results[shape.name][encoder]
      r.enc[round] = encode_run(shape, encoder)
      if not encode_only then
        r.rate[round], r.cpu[round], r.other[round] = produce_run(shape, encoder)
      end
    end
  end
end

local function thousands(n)
  local s = ("%.0f"):format(n)
  return (s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end

local vm = jit and jit.version or _VERSION
if encode_only then
  print(("| %s: shape | encoder | bytes | encode µs/table | ns/float |"):format(vm))
  print("| --- | --- | --- | --- | --- |")
else
  print(("| %s: shape | encoder | bytes | encode µs/table | ns/float | produce msg/s | main thread µs/msg | " ..
         "other threads µs/msg | msg/s of each round |"):format(vm))
  print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
end
for _, shape in ipairs(SHAPES) do
  for _, encoder in ipairs(ENCODERS) do
    local r = results[shape.name][encoder]
    local enc = median(r.enc)
    local bytes = #core.encode_value(shape.pool[1], encoder ~= "builtin" and encoder or nil)
    local row = ("| %s | %s | %d | %.2f | %.0f |"):format(shape.name, encoder, bytes, enc, enc * 1000 / shape.floats)
    if not encode_only then
      local each = {}
      for i, v in ipairs(r.rate) do each[i] = thousands(v) end
      row = row .. (" %s | %.2f | %.2f | %s |"):format(thousands(median(r.rate)), median(r.cpu),
        median(r.other), table.concat(each, ", "))
    end
    print(row)
  end
end
-- builtin against lua-cjson: how many times faster (> 1: the builtin is)
for _, shape in ipairs(SHAPES) do
  local b, c = results[shape.name].builtin, results[shape.name]["lua-cjson"]
  io.write(("RESULT shape=%s vm=%s encode=%.2f"):format(shape.name, vm:gsub(" ", "_"), median(c.enc) / median(b.enc)))
  if not encode_only then
    io.write((" rate=%.2f main_cpu=%.2f"):format(median(b.rate) / median(c.rate), median(c.cpu) / median(b.cpu)))
  end
  io.write("\n")
end
