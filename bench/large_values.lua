-- large_values.lua - what a message of each size costs the producing
-- thread: CPU microseconds per message (from /proc) and
-- messages per second, for pre-encoded strings of 100 B to 256 KiB.
-- Strings from 1 KiB on are lent to librdkafka instead of copied; build
-- with -DPRD_NOCOPY_MIN=1000000000 to measure the copying library instead.
-- bench/run.sh runs it (-L MEGABYTES); by hand:
--
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 bench/large_values.lua [MEGABYTES_PER_SIZE]
--
-- librdkafka's mock cluster runs in this process (its threads are not
-- counted); compression is off, so what is measured is the library's
-- handling of the bytes, not zlib's.
local producers = require("producers")

local megabytes = tonumber(arg[1]) or 400
local SIZES = { 100, 512, 1024, 4096, 16384, 65536, 262144 }

-- CPU seconds of this (the main) thread: schedstat's nanoseconds on a CPU
-- where the kernel keeps them, else utime + stime in clock ticks.
local function main_thread_cpu()
  local pid = assert(io.open("/proc/self/stat")):read("a"):match("^(%d+)")
  local task = "/proc/self/task/" .. pid
  local schedstat = io.open(task .. "/schedstat")
  if schedstat then return tonumber(schedstat:read("a"):match("^(%d+)")) / 1e9 end
  local fields = {}
  for f in assert(io.open(task .. "/stat")):read("a"):gsub("^.-%) ", ""):gmatch("%S+") do
    fields[#fields + 1] = f
  end
  return (tonumber(fields[12]) + tonumber(fields[13])) / 100    -- USER_HZ ticks
end

local function now()
  local ok, system = pcall(require, "system")
  return ok and system.monotime() or os.time()
end

local p = assert(producers.kafka.new{
  config = { ["test.mock.num.brokers"] = 1, ["compression.type"] = "none",
             ["message.max.bytes"] = 1000000 },
  log_level = "warn",
  on_delivery = function(err) assert(not err, err) end,
})

local function thousands(n)
  local s = ("%.0f"):format(n)
  return (s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end

print("| value bytes | messages | CPU µs/msg, producing thread | msg/s |")
print("| --- | --- | --- | --- |")
for _, size in ipairs(SIZES) do
  local values = {}
  for i = 1, 16 do values[i] = string.rep(string.char(64 + i), size) end
  local n = math.min(300000, math.floor(megabytes * 1e6 / size))
  assert(p:produce("large", "k", values[1]) and p:flush(10))
  local cpu0, t0 = main_thread_cpu(), now()
  for i = 1, n do
    while true do
      local ok, err, code = p:produce("large", "k", values[i % 16 + 1])
      if ok then break end
      assert(code == "_QUEUE_FULL", err)
      p:poll(0.05)
    end
  end
  assert(p:flush(60), "flush timed out")
  local cpu, seconds = main_thread_cpu() - cpu0, now() - t0
  print(("| %s | %s | %.2f | %s |"):format(thousands(size), thousands(n), cpu * 1e6 / n,
    seconds > 0 and thousands(n / seconds) or "n/a"))
end
p:close()
