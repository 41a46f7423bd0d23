-- lua_producer.lua - benchmarks (b), (c) and the latency mode for the
-- producers library.
--
-- Run from the repository root (bench/run.sh does this):
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 bench/lua_producer.lua MODE BOOTSTRAP [COUNT] [TOPIC] [RATE]
-- or the same with luajit and LUA_CPATH="build-luajit/?.so;;".
--
-- MODE
--   tables   (b) produce a fresh Lua table per message; the library encodes
--            it to JSON.  Deliveries are counted in the producer's
--            on_delivery callback.
--   strings  (c) produce pre-encoded JSON strings (raw bytes); same counting.
--   latency  produce tables at a fixed RATE (default 50,000 msg/s) with
--            linger.ms=5 and report the delivery latency p50/p99/p99.9/max.
--            Latency of a message = monotonic time when on_delivery runs for
--            it minus monotonic time just before its p:produce() call, i.e.
--            linger + gzip + broker round trip + the wait until the script
--            polls (the pacing loop polls at least every millisecond).  The
--            message carries its sequence number in a "seq" field, which the
--            callback reads back from report.value.  When the report has a
--            `latency` field (seconds, librdkafka's rd_kafka_message_latency:
--            produce() to broker acknowledgement) its percentiles are
--            printed too, as rdk_p50_ms etc.
--
-- Workload (identical to raw_producer.c and python_producer.py): message i
-- uses slot k = i % 1000: key "user-<k>", value
--   {"event":"user_signup","user_id":10000+k,"ts":1700000000000+k,
--    "tags":["a","b","c"],"ok":true}
-- When the local queue is full (code "_QUEUE_FULL") the script polls and
-- retries.  An untimed warm-up of 1,000 messages (one per key) comes first.
--
-- Output: one machine-readable line on stdout, parsed by bench/run.sh:
--   RESULT bench=lua-tables sent=.. delivered=.. failed=.. seconds=.. rate=.. rss_kb=..
--          cpu_main_us=.. cpu_other_us=.. [rss_at=.. rss_at_kb=.. max_queue=..]
--   RESULT bench=lua-latency sent=.. delivered=.. failed=.. target_rate=..
--          achieved_rate=.. p50_ms=.. p99_ms=.. p999_ms=.. max_ms=..
--          [rdk_p50_ms=.. rdk_p99_ms=.. rdk_p999_ms=.. rdk_max_ms=..] rss_kb=..
-- rate counts successful deliveries only, over the time from the first
-- produce call until flush has served the last report; rss_kb is VmHWM (peak RSS)
-- from /proc/self/status; cpu_*_us the CPU time (user + system, from /proc) of
-- the main thread and of all other threads (librdkafka's) during the timed
-- part, per message.
--
-- BENCH_BACKEND=nats runs tables and strings through producers.nats
-- instead (bench/nats/run.sh): BOOTSTRAP is then the server's URL and
-- TOPIC the subject (a JetStream stream must capture it); the RESULT line
-- says bench=nats-lua-tables (or -strings), cpu_other_us nats.c's threads.
--
-- BENCH_HEADER=1 gives each table message one header the size of the
-- spool's producers-id (the same table every time: bench/spool/run.sh
-- measures what the header alone costs, without a spool).
--
-- BENCH_CONFIG="name=value,..." in the environment adds librdkafka
-- properties to the throughput producers (run.sh's memory section: a
-- smaller local queue).  BENCH_RSS_AT=N adds to the RESULT line rss_at_kb,
-- the peak RSS once N messages have been produced (run.sh's memory section
-- compares it with the peak at the end of a longer run), and max_queue, the
-- largest p:queue_length() seen (sampled every 1,024 messages).  Such a run
-- also reads VmHWM every 4,096 messages and reports the largest reading:
-- Linux stores the high-water mark only at some events (unmapping memory,
-- exit) and shows max(stored, current RSS), so a peak that passed since the
-- last such event can be missing from a later reading.

local producers = require("producers")

local KEY_POOL = 1000
local BASE_TS = 1700000000000

local mode = arg[1]
local bootstrap = arg[2]
local count = tonumber(arg[3] or "")
local topic = arg[4] or "bench"
local rate = tonumber(arg[5] or "") or 50000

if (mode ~= "tables" and mode ~= "strings" and mode ~= "latency") or not bootstrap then
  io.stderr:write("usage: lua5.4 bench/lua_producer.lua tables|strings|latency ",
                  "BOOTSTRAP [COUNT] [TOPIC] [RATE]\n")
  os.exit(2)
end
count = count or (mode == "latency" and 250000 or 1000000)

-- A monotonic clock in seconds.  os.clock() is CPU time and os.time() has a
-- one-second resolution, so neither will do; lua-system (Debian: lua-system)
-- provides monotime(), luasocket's gettime() is wall-clock time as a fallback.
local now, clock_name
do
  local ok, system = pcall(require, "system")
  if ok and type(system) == "table" and system.monotime then
    now, clock_name = system.monotime, "system.monotime (monotonic)"
  else
    local ok2, socket = pcall(require, "socket")
    if ok2 and type(socket) == "table" and socket.gettime then
      now, clock_name = socket.gettime, "socket.gettime (wall clock)"
    else
      io.stderr:write("lua_producer: no sub-second clock: install lua-system ",
                      "(apt-get install lua-system)\n")
      os.exit(2)
    end
  end
end

local function peak_rss_kb()
  local f = io.open("/proc/self/status", "r")
  if not f then return 0 end
  local status = f:read("a")
  f:close()
  return tonumber(status:match("VmHWM:%s*(%d+)")) or 0
end

-- CPU seconds (user + system) used so far by the main thread and by the
-- whole process, from /proc (the main thread's id is the process id).
local function cpu_seconds()
  local function ticks(path)
    local f = io.open(path, "r")
    if not f then return 0 end
    local stat = f:read("a")
    f:close()
    local utime, stime = stat:match("%)%s+%S+" .. ("%s+%S+"):rep(10) .. "%s+(%d+)%s+(%d+)")
    return (tonumber(utime) or 0) + (tonumber(stime) or 0)
  end
  local pid = (io.open("/proc/self/stat", "r"):read("a")):match("^(%d+)")
  local hz = 100      -- USER_HZ: clock ticks in /proc on Linux
  return ticks("/proc/self/task/" .. pid .. "/stat") / hz, ticks("/proc/self/stat") / hz
end

local keys = {}
for k = 0, KEY_POOL - 1 do keys[k] = "user-" .. k end

-- After p:produce refused a message (msg, code): polls and retries while
-- the local queue is full.  Returns true when queued in the end, false on
-- any other error (counted by the caller).
local first_error
local function retry(p, key, value, msg, code)
  while code == "_QUEUE_FULL" do
    p:poll(0.1)
    local ok
    ok, msg, code = p:produce(topic, key, value)
    if ok then return true end
  end
  first_error = first_error or string.format("%s (%s)", tostring(msg), tostring(code))
  return false
end

local function produce(p, key, value)
  local ok, msg, code = p:produce(topic, key, value)
  return ok or retry(p, key, value, msg, code)
end

-- Waits until every queued message has been delivered or failed (bounded).
local function drain(p)
  local deadline = now() + 300
  while now() < deadline do
    if p:flush(1) then return end
  end
  io.stderr:write("lua_producer: flush still timing out after 300 s\n")
end

-- Untimed warm-up: one message per key (so every partition), then waits for
-- them, so that connections and metadata are in place before measuring.
-- Without it a run sometimes stalls ~1 s at start (seen with librdkafka 2.0.2
-- and the mock cluster, in every client, the C one included).
local function warm_up(p)
  for k = 0, KEY_POOL - 1 do
    produce(p, keys[k], { event = "warmup", user_id = 10000 + k })
  end
  drain(p)
end

-- (b) tables: a Lua on_delivery callback counts every report, as the
-- original library's delivery report did. (c) strings: no callback, like
-- (a), which counts in C: the library counts deliveries (p:stats()).
-- The run ends when flush has served the last report.
local extra_config = {}
for name, value in (os.getenv("BENCH_CONFIG") or ""):gmatch("([^=,]+)=([^,]*)") do
  extra_config[name] = value
end

local backend = os.getenv("BENCH_BACKEND") or "kafka"

-- BENCH_SPOOL_DIR (and BENCH_SPOOL_FSYNC, BENCH_SPOOL_ID_HEADER=0): the
-- throughput producers through the durable spool (bench/spool/run.sh
-- compares with and without).
local spool = os.getenv("BENCH_SPOOL_DIR") and { dir = os.getenv("BENCH_SPOOL_DIR"),
                                                  fsync = os.getenv("BENCH_SPOOL_FSYNC"),
                                                  id_header = os.getenv("BENCH_SPOOL_ID_HEADER") ~= "0" }

-- A throughput producer of the backend asked for, with on_delivery.
local function new_producer(on_delivery)
  if backend == "nats" then
    return assert(producers.nats.new{ servers = bootstrap, on_delivery = on_delivery })
  end
  return assert(producers.kafka.new{
    bootstrap_servers = bootstrap, config = extra_config, spool = spool, on_delivery = on_delivery,
  })
end

local function throughput(strings)
  local delivered, failed = 0, 0
  local p = new_producer(not strings and function(err)
    if err == nil then
      delivered = delivered + 1
    else
      failed = failed + 1
    end
  end or nil)

  local encoded = {}
  if strings then
    for k = 0, KEY_POOL - 1 do
      encoded[k] = string.format(
        '{"event":"user_signup","user_id":%d,"ts":%d,"tags":["a","b","c"],"ok":true}',
        10000 + k, BASE_TS + k)
    end
  end

  warm_up(p)
  delivered, failed = 0, 0
  local before = p:stats()

  local produce_opts = os.getenv("BENCH_HEADER") == "1"
    and { headers = { ["producers-id"] = "25f2842962ebac7a540b6db9e77518a0-1234567" } } or nil
  local sent, errors = 0, 0
  local rss_at = tonumber(os.getenv("BENCH_RSS_AT") or "") or -1
  local rss_at_kb, max_queue, rss_max = nil, 0, 0
  local cpu_main0, cpu_all0 = cpu_seconds()
  local t0 = now()
  for i = 0, count - 1 do
    local k = i % KEY_POOL
    local value
    if strings then
      value = encoded[k]
    else
      value = { event = "user_signup", user_id = 10000 + k, ts = BASE_TS + k,
                tags = { "a", "b", "c" }, ok = true }
    end
    -- inline, as the C and Python clients call produce in their loops
    local ok, msg, code = p:produce(topic, keys[k], value, produce_opts)
    if ok or retry(p, keys[k], value, msg, code) then sent = sent + 1 else errors = errors + 1 end
    if i % 1024 == 0 then
      p:poll(0)
      if rss_at > 0 then
        max_queue = math.max(max_queue, p:queue_length())
        if i % 4096 == 0 then rss_max = math.max(rss_max, peak_rss_kb()) end
      end
    end
    if i + 1 == rss_at then
      rss_max = math.max(rss_max, peak_rss_kb())
      rss_at_kb = rss_max
    end
  end
  drain(p)
  local t_end = now()           -- after the last report
  local cpu_main1, cpu_all1 = cpu_seconds()
  if strings then
    local after = p:stats()
    delivered = after.delivered - before.delivered
    failed = after.failed - before.failed
  end

  local seconds = delivered > 0 and t_end - t0 or 0
  local per_msg = delivered > 0 and 1e6 / delivered or 0
  if first_error then io.stderr:write("lua_producer: produce error: ", first_error, "\n") end
  io.stdout:write(string.format(
    "RESULT bench=%slua-%s sent=%d delivered=%d failed=%d seconds=%.3f rate=%.0f rss_kb=%d " ..
    "cpu_main_us=%.3f cpu_other_us=%.3f%s\n",
    backend == "nats" and "nats-" or "", strings and "strings" or "tables", sent, delivered, failed + errors, seconds,
    seconds > 0 and delivered / seconds or 0, math.max(rss_max, peak_rss_kb()),
    (cpu_main1 - cpu_main0) * per_msg, ((cpu_all1 - cpu_main1) - (cpu_all0 - cpu_main0)) * per_msg,
    rss_at_kb and string.format(" rss_at=%d rss_at_kb=%d max_queue=%d", rss_at, rss_at_kb, max_queue) or ""))
  p:close()
  return delivered == count
end

local function latency()
  local send_time = {}
  local latencies = {}      -- ours: produce() -> on_delivery, monotonic
  local rdk_latencies = {}  -- report.latency: produce() -> broker ack
  local delivered, failed = 0, 0
  local config = { ["linger.ms"] = 5 }      -- the mode's own, over BENCH_CONFIG
  for name, value in pairs(extra_config) do config[name] = config[name] or value end
  local p = assert(producers.kafka.new{
    bootstrap_servers = bootstrap,
    config = config,
    on_delivery = function(err, report)
      if err ~= nil then
        failed = failed + 1
        return
      end
      local t = now()
      local seq = tonumber(type(report.value) == "string" and report.value:match('"seq":(%d+)'))
      local t_sent = seq and send_time[seq]
      if t_sent then
        latencies[#latencies + 1] = t - t_sent
        if type(report.latency) == "number" then
          rdk_latencies[#rdk_latencies + 1] = report.latency
        end
        send_time[seq] = nil
        delivered = delivered + 1
      end
    end,
  })

  warm_up(p)
  delivered, failed = 0, 0
  local before = p:stats()

  local sent, errors = 0, 0
  local t0 = now()
  while sent + errors < count do
    -- Produce what is due by now at the target rate, then poll (<= 1 ms).
    local due = math.min(count, math.floor((now() - t0) * rate))
    while sent + errors < due do
      local i = sent + errors
      local k = i % KEY_POOL
      local value = { event = "user_signup", user_id = 10000 + k, ts = BASE_TS + k,
                      tags = { "a", "b", "c" }, ok = true, seq = i }
      send_time[i] = now()
      if produce(p, keys[k], value) then sent = sent + 1 else errors = errors + 1 end
    end
    p:poll(0.001)
  end
  local produce_seconds = now() - t0
  drain(p)

  -- "p50_ms=.. p99_ms=.. p999_ms=.. max_ms=.." for a list of seconds.
  local function percentiles(prefix, list)
    table.sort(list)
    local out = {}
    for _, q in ipairs({ { "p50", 0.50 }, { "p99", 0.99 }, { "p999", 0.999 }, { "max", 1.0 } }) do
      local idx = math.max(1, math.min(#list, math.ceil(q[2] * #list)))
      out[#out + 1] = string.format("%s%s_ms=%.2f", prefix, q[1], (list[idx] or 0) * 1000)
    end
    return table.concat(out, " ")
  end
  if first_error then io.stderr:write("lua_producer: produce error: ", first_error, "\n") end
  if delivered < sent - failed then
    io.stderr:write(string.format(
      "lua_producer: %d deliveries could not be matched to a send time " ..
      "(report.value without a \"seq\" field?)\n", sent - failed - delivered))
  end
  io.stderr:write("lua_producer: latency measured with ", clock_name,
                  ", from just before p:produce() to on_delivery\n")
  io.stdout:write(string.format(
    "RESULT bench=lua-latency sent=%d delivered=%d failed=%d target_rate=%d " ..
    "achieved_rate=%.0f %s%s rss_kb=%d\n",
    sent, delivered, failed + errors, rate, sent / produce_seconds,
    percentiles("", latencies),
    #rdk_latencies > 0 and " " .. percentiles("rdk_", rdk_latencies) or "",
    peak_rss_kb()))
  p:close()
  return delivered == count
end

local ok
if mode == "latency" then
  if backend ~= "kafka" then
    io.stderr:write("lua_producer: latency mode runs on Kafka only\n")
    os.exit(2)
  end
  ok = latency()
else
  ok = throughput(mode == "strings")
end
os.exit(ok and 0 or 1)
