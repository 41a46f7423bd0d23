--- The nginx benchmark's worker side (bench/nginx/run.sh, nginx.conf).
--
-- One producer per worker, made in init_worker; an ngx.timer.every
-- poll(0) and produce itself serve the delivery reports; on_delivery
-- counts them in this worker's counters. Each location handles 100
-- messages per request, the benchmark's object
--   { event = "user_signup", user_id = 10000 + k, ts = 1700000000000 + k,
--     tags = { "a", "b", "c" }, ok = true }
-- with key "user-<k>", k = message number mod 1000 (as bench/lua_producer.lua):
--
--   /request     no message: the cost of a request by itself
--   /build100    builds the 100 tables, nothing else (request + table cost)
--   /encode100   builds them and calls producers.core.encode_value on each
--   /produce100  builds them and produces each (the library encodes)
--   /strings100  produces 100 pre-encoded JSON strings (no table, no encoding)
--   /quiet100    the same through a second producer without on_delivery
--                (no report table, no Lua callback per message)
--   /stats       this worker's counters, "name=value" words on one line
--   /jit?off|on  jit.off() + jit.flush() / jit.on() for this worker's VM
local producers = require("producers")
local core = require("producers.core")

local M = {}

local N = 100                     -- messages per request
local KEY_POOL = 1000
local BASE_TS = 1700000000000

local producer, topic
local quiet_producer              -- made on the first /quiet100
local quiet_failed = 0            -- its failed reports (from its log lines)
local quiet_produced = 0          -- messages it queued
local settings

-- Counters of this worker (one worker: the whole server).
local messages = 0                -- messages handled by any location
local produced = 0                -- produce returned true
local delivered = 0               -- successful delivery reports served
local failed = 0                  -- failed delivery reports served
local queue_full = 0              -- produce answered _QUEUE_FULL (then retried)
local errors = 0                  -- produce failed otherwise
local seq = 0                     -- next message number
local first_error

local keys, encoded = {}, {}
local kept = {}                   -- /build100 keeps its last tables here
for k = 0, KEY_POOL - 1 do
  keys[k] = "user-" .. k
  encoded[k] = ('{"event":"user_signup","user_id":%d,"ts":%d,"tags":["a","b","c"],"ok":true}')
    :format(10000 + k, BASE_TS + k)
end

local LEVELS = { debug = ngx.DEBUG, info = ngx.INFO, warn = ngx.WARN, error = ngx.ERR }
local function logger(level, message)
  ngx.log(LEVELS[level] or ngx.ERR, "producers: ", message)
end

local function on_delivery(err)
  if err == nil then
    delivered = delivered + 1
  else
    failed = failed + 1
    if not first_error then first_error = err end
  end
end

local function poll(premature)
  if premature then return end
  if producer and not producer:is_closed() then
    local ok, err = pcall(producer.poll, producer, 0)
    if not ok then ngx.log(ngx.ERR, "bench: poll: ", err) end
  end
  if quiet_producer then
    local ok, err = pcall(quiet_producer.poll, quiet_producer, 0)
    if not ok then ngx.log(ngx.ERR, "bench: poll: ", err) end
  end
end

--- init_worker_by_lua*: opts.bootstrap, opts.topic, opts.poll_interval (s),
-- opts.config (librdkafka properties, for every producer here).
function M.init_worker(opts)
  settings = opts
  topic = opts.topic
  local ok, p = pcall(producers.kafka.new, {
    bootstrap_servers = opts.bootstrap,
    config = opts.config,
    logger = logger,
    on_delivery = on_delivery,
  })
  if not ok then
    ngx.log(ngx.ERR, "bench: cannot create the producer: ", p)
    return
  end
  producer = p
  local started, err = ngx.timer.every(opts.poll_interval, poll)
  if not started then ngx.log(ngx.ERR, "bench: cannot start the poll timer: ", err) end
end

function M.exit_worker()
  if producer then
    local p = producer
    producer = nil
    pcall(p.close, p, 5)
  end
  if quiet_producer then
    local q = quiet_producer
    quiet_producer = nil
    pcall(q.close, q, 5)
  end
end

-- After a refused produce (msg, code): when the local queue is full, yields
-- to the event loop for 1 ms (ngx.sleep: the worker goes on serving, the
-- poll timer serves reports) and retries with send(p, key, value) -> ok, msg,
-- code, so every message is produced once and refused calls are only counted.
-- Returns 1 when the message was produced in the end, else 0.
local function refused(send, p, key, value, msg, code)
  while true do
    if code ~= "_QUEUE_FULL" then
      errors = errors + 1
      if not first_error then first_error = tostring(msg) .. " (" .. tostring(code) .. ")" end
      return 0
    end
    queue_full = queue_full + 1
    ngx.sleep(0.001)
    local ok
    ok, msg, code = send(p, key, value)
    if ok then
      produced = produced + 1
      return 1
    end
  end
end

function M.build100()
  local s = seq
  for _ = 1, N do
    local k = s % KEY_POOL
    s = s + 1
    local value = { event = "user_signup", user_id = 10000 + k, ts = BASE_TS + k,
                    tags = { "a", "b", "c" }, ok = true }
    kept[s % 8] = value   -- escapes: the JIT cannot sink (skip) the allocation
  end
  seq, messages = s, messages + N
  ngx.say("ok")
end

function M.encode100()
  local s, encode, bytes = seq, core.encode_value, 0
  for _ = 1, N do
    local k = s % KEY_POOL
    s = s + 1
    local value = { event = "user_signup", user_id = 10000 + k, ts = BASE_TS + k,
                    tags = { "a", "b", "c" }, ok = true }
    bytes = bytes + #encode(value)
  end
  seq, messages = s, messages + N
  ngx.say(bytes)
end

local function library_send(p, key, value)
  return p:produce(topic, key, value)
end

function M.produce100()
  local p, s = producer, seq
  for _ = 1, N do
    local k = s % KEY_POOL
    s = s + 1
    local value = { event = "user_signup", user_id = 10000 + k, ts = BASE_TS + k,
                    tags = { "a", "b", "c" }, ok = true }
    local ok, msg, code = p:produce(topic, keys[k], value)
    if ok then produced = produced + 1 else refused(library_send, p, keys[k], value, msg, code) end
  end
  seq, messages = s, messages + N
  ngx.say("ok")
end

-- Returns the number of messages produced.
local function strings100(p)
  local s, n = seq, 0
  for _ = 1, N do
    local k = s % KEY_POOL
    s = s + 1
    local key, value = keys[k], encoded[k]
    local ok, msg, code = p:produce(topic, key, value)
    if ok then
      produced, n = produced + 1, n + 1
    else
      n = n + refused(library_send, p, key, value, msg, code)
    end
  end
  seq, messages = s, messages + N
  ngx.say("ok")
  return n
end

function M.strings100() strings100(producer) end

-- No message: what a request costs by itself.
function M.request()
  ngx.say("ok")
end

-- The same through a second producer made without on_delivery: its reports
-- build no table and call no Lua (the library's default report only logs
-- failures, and successes at debug level, which is off): what the per-message
-- report costs. Failures are counted from the log lines.
function M.quiet100()
  local q = quiet_producer
  if not q then
    q = assert(producers.kafka.new{
      bootstrap_servers = settings.bootstrap,
      config = settings.config,
      logger = function(level, message)
        if message:find("delivery failed", 1, true) then quiet_failed = quiet_failed + 1 end
        logger(level, message)
      end,
    })
    quiet_producer = q
  end
  local n = strings100(q)      -- may yield: add after, not before
  quiet_produced = quiet_produced + n
end

function M.stats()
  local waiting = producer and producer:queue_length() or 0
  -- the quiet producer's deliveries: queued, not failed, not waiting
  local quiet_waiting = quiet_producer and quiet_producer:queue_length() or 0
  waiting = waiting + quiet_waiting
  local delivered = delivered + quiet_produced - quiet_failed - quiet_waiting
  local failed = failed + quiet_failed
  ngx.say(("pid=%d messages=%d produced=%d delivered=%d failed=%d queue_full=%d errors=%d waiting=%d jit=%s")
    :format(ngx.worker.pid(), messages, produced, delivered, failed, queue_full, errors,
            waiting, (jit.status()) and "on" or "off"))
  if first_error then ngx.say("first_error=", first_error) end
end

function M.jit()
  local args = ngx.var.args
  if args == "off" then
    jit.off()
    jit.flush()
  elseif args == "on" then
    jit.on()
  end
  ngx.say("jit=", (jit.status()) and "on" or "off")
  ngx.say(jit.version)
end

return M
