-- A plain Lua producer through the durable spool, for the process-death
-- specs (spec/integration/85-spool_kill_spec.lua): it produces numbered
-- messages (the value is the number) and prints each number on stdout,
-- one a line, as soon as produce returned true: what a kill -9 must not
-- lose. Run by support.child (LUA_PATH holds lua/ and spec/).
--
--   lua spool_producer.lua dir=/tmp/s topic=t brokers=127.0.0.1:9092 \
--       from=1 to=3000 rate=3000 [fsync=never] [max_bytes=N] \
--       [segment_bytes=N] [timeout_ms=3000] [drain=1] [linger_ms=5]
--
-- from > to sends nothing (a restart that only delivers what the dir
-- holds). With drain=1, after the last message it waits until the spool
-- is empty (metrics().spool.records == 0), prints "drained" on stderr
-- and closes. stderr gets one line per event: "ready <records>" once the
-- spool is open (records it resumed), "refused <n> <name> <message>",
-- "failed <n> <err>" (a delivery report with an error),
-- "open-failed <name> <message>" (the error new raised; exit 3),
-- "drained", "not drained".
local producers = require("producers")

local opts = {}
for _, a in ipairs(arg) do
  local k, v = a:match("^([%w_]+)=(.*)$")
  assert(k, "argument not key=value: " .. a)
  opts[k] = v
end
local from, to = tonumber(opts.from or 1), tonumber(opts.to or 0)
local rate = tonumber(opts.rate or 3000)

io.stdout:setvbuf("line")
io.stderr:setvbuf("line")
local function event(...)
  io.stderr:write(table.concat({ ... }, " "), "\n")
end

-- a spool that cannot be opened raises an error object (name SPOOL_LOCKED, ...)
local made, p = pcall(producers.kafka.new, {
  bootstrap_servers = opts.brokers,
  spool = { dir = opts.dir, fsync = opts.fsync, max_bytes = tonumber(opts.max_bytes),
            segment_bytes = tonumber(opts.segment_bytes) },
  config = {
    ["broker.address.family"] = "v4",
    ["message.timeout.ms"] = tonumber(opts.timeout_ms or 3000),
    ["linger.ms"] = tonumber(opts.linger_ms or 5),
    -- the in-flight window the duplicate bound is derived from (the spec's WINDOW)
    ["batch.num.messages"] = 100,
    ["max.in.flight.requests.per.connection"] = 5,
  },
  logger = function(level, line) event("log", level, line) end,
  on_delivery = function(err, r)
    if err then event("failed", tostring(r.value), tostring(err)) end
  end,
})
if not made then
  local e = p
  event("open-failed", tostring(type(e) == "table" and e.name or "?"),
        tostring(type(e) == "table" and e.message or e))
  os.exit(3)
end

local function spooled() return p:metrics().spool.records end
event("ready", tostring(spooled()))

local clock = os.clock
local ok_system, system = pcall(require, "system")
if ok_system then clock = system.monotime end

local t0, i = clock(), from
while i <= to do
  local target = from + math.floor((clock() - t0) * rate)
  while i <= to and i <= target do
    local ok, err, ename = p:produce(opts.topic, tostring(i % 16), tostring(i))
    if ok then
      io.stdout:write(i, "\n")
    else
      event("refused", tostring(i), tostring(ename), tostring(err))
    end
    i = i + 1
  end
  p:poll(0.002)
end

if opts.drain == "1" then
  local deadline = clock() + tonumber(opts.drain_timeout or 60)
  while spooled() > 0 and clock() < deadline do p:poll(0.05) end
  event(spooled() == 0 and "drained" or "not drained", tostring(spooled()))
end
p:close()
