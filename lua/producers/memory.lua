--- The memory backend: keeps messages in Lua and serves delivery reports
-- like Kafka, so scripts can be tested with no broker.
--
-- Values are encoded exactly as the Kafka backend encodes them. A report
-- is served by the next produce, poll, flush or close after its message
-- was produced, with offsets counted per topic and partition. Delivered
-- messages are kept in `p.messages`.
--
-- Options besides those of the Kafka backend (on_delivery, logger,
-- log_level): `partitions` (default 1), `queue_limit` (default 100000
-- undelivered messages, then produce returns nil, "Local: Queue full",
-- "_QUEUE_FULL"), and `fail`, a function(message) returning an error name
-- such as "_MSG_TIMED_OUT" to make that message's delivery fail. `fail`
-- runs when the message is produced: a name librdkafka does not know (or
-- an error `fail` raises) makes produce raise, with nothing queued, so no
-- message is ever left without its report.
--
-- produce refuses what the Kafka backend refuses, with its messages: the
-- same argument checks, in the same order.
--
-- A failed message's report, as the Kafka backend's: the callback gets
-- err (the message) and the report has err_name (the name, e.g.
-- "_MSG_TIMED_OUT"; report.error is its older name, kept as an alias),
-- error_object and offset -1001.
-- @classmod producers.memory

local core = require("producers.core")
local BaseProducer = require("producers.base")
local log = require("producers.log")

local Memory = BaseProducer.extend("memory")

function Memory.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("producers.memory.new: expected a table of options, got " .. type(opts), 2)
  end
  if opts.on_delivery ~= nil and not log.is_callable(opts.on_delivery) then
    error("producers.memory.new: option 'on_delivery' must be a function, got "
          .. type(opts.on_delivery), 2)
  end
  return setmetatable({
    name = "memory",
    partitions = opts.partitions or 1,
    queue_limit = opts.queue_limit or 100000,
    fail = opts.fail,
    json = opts.json,
    on_delivery = opts.on_delivery,
    logger = log.wrap(opts.logger),
    log_level = log.level(opts.log_level),
    messages = {},       -- delivered, in order
    queued = {},         -- produced, report not yet served
    next_offset = {},    -- "topic\0partition" -> next offset
    closed = false,
  }, Memory)
end

local function check_open(self)
  if self.closed then error("producer is closed", 3) end
end

local function log_line(self, level, message)
  if log.LEVELS[level] >= self.log_level then self.logger(level, message) end
end

-- A stable partition for a key (djb2), or round robin without one.
function Memory:partition_for(key)
  if self.partitions == 1 then return 0 end
  if key == nil then
    self.round = ((self.round or -1) + 1) % self.partitions
    return self.round
  end
  local h = 5381
  for i = 1, #key do h = (h * 33 + key:byte(i)) % 4294967296 end
  return h % self.partitions
end

-- n as an integer, or nil when it has none (a fraction, NaN, an
-- infinity, beyond 64 bits), as lua_tointegerx decides in the C core.
local function to_integer(n)
  if math.tointeger then return math.tointeger(n) end
  if n == n and n >= -2^63 and n < 2^63 and n == math.floor(n) then return n end
end

local function integer_string(n)
  if math.type and math.type(n) == "integer" then return tostring(n) end
  return ("%.0f"):format(n)
end

-- The C core's bounds, and their text (2^63 - 1 is no exact number on
-- Lua 5.1 and LuaJIT).
local RANGES = {
  partition = { -1, 2147483647, "-1 to 2147483647" },
  timestamp = { 0, math.maxinteger or 2^63, "0 to 9223372036854775807" },
}

-- opts[field] as an integer in its RANGES, or nil when absent.
local function opt_integer(opts, field)
  local min, max, range = RANGES[field][1], RANGES[field][2], RANGES[field][3]
  local v = rawget(opts, field)
  if v == nil then return nil end
  local n = type(v) == "number" and to_integer(v)
  if not n then
    error(("opts.%s: expected an integer, got %s")
      :format(field, type(v) == "number" and "a fraction" or type(v)), 4)
  end
  if n < min or n > max then
    error(("opts.%s: out of range (%s), got %s"):format(field, range, integer_string(n)), 4)
  end
  return n
end

-- The Kafka backend's checks of one header: name, then value. (Error
-- levels here and below name produce's caller.)
local function check_header(name, value)
  local bad = type(name) ~= "string" and type(name) or type(value) ~= "string" and type(value)
  if bad then
    error("opts.headers: names and values must be strings, got " .. bad, 5)
  end
  if name:find("\0", 1, true) then
    error("opts.headers: names must not contain a NUL byte", 5)
  end
end

local function check_headers(headers)
  if headers == nil then return end
  if type(headers) ~= "table" then
    error("opts.headers: expected a table, got " .. type(headers), 4)
  end
  for name, value in next, headers do
    if type(name) == "number" and type(value) == "table" then
      check_header(rawget(value, 1), rawget(value, 2))    -- a {name, value} pair
    else
      check_header(name, value)
    end
  end
end

-- Checks produce's arguments in the Kafka backend's order; returns opts
-- (a table) and its checked partition and timestamp. Reads opts raw, as
-- the C core does.
local function check_args(topic, key, opts)
  if type(topic) ~= "string" then
    error("topic: expected string, got " .. type(topic), 3)
  end
  if topic:find("\0", 1, true) then error("topic: must not contain a NUL byte", 3) end
  if key ~= nil and type(key) ~= "string" then
    error("key: expected string or nil, got " .. type(key), 3)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("opts: expected table or nil, got " .. type(opts), 3)
  end
  opts = opts or {}
  local partition = opt_integer(opts, "partition")
  local timestamp = opt_integer(opts, "timestamp")
  local on_delivery = rawget(opts, "on_delivery")
  if on_delivery ~= nil and not log.is_callable(on_delivery) then
    error("opts.on_delivery: expected a function or callable, got " .. type(on_delivery), 3)
  end
  check_headers(rawget(opts, "headers"))
  return opts, partition, timestamp
end

-- The error name fail gives message, or nil for a delivery; raises when
-- it is not a name librdkafka knows, so no report can be lost to it.
function Memory:failure(message)
  local name = self.fail and self.fail(message)
  if not name then return nil end
  local ok = type(name) == "string" and name ~= "NO_ERROR" and pcall(core.error_string, name)
  if not ok then
    error(("producers.memory: fail must return nil or an error name such as '_MSG_TIMED_OUT', got %s")
      :format(type(name) == "string" and ("'" .. name .. "'") or type(name)), 3)
  end
  return name
end

-- produce's refusal of a message, as the Kafka backend's: nil, message,
-- name, error object.
local function refusal(name)
  local err = core.error(name)
  return nil, err.message, name, err
end

function Memory:produce(topic, key, value, opts)
  check_open(self)
  local partition, timestamp
  opts, partition, timestamp = check_args(topic, key, opts)
  local bytes = core.encode_value(value, self.json)
  local ready = #self.queued       -- reports to serve after queueing, as Kafka does
  if ready >= self.queue_limit then
    self:serve(ready)
    return refusal("_QUEUE_FULL")
  end
  if partition and partition >= self.partitions then
    self:serve(ready)
    return refusal("_UNKNOWN_PARTITION")
  end
  local message = {
    topic = topic, key = key, value = bytes, headers = rawget(opts, "headers"),
    partition = (partition == nil or partition == -1) and self:partition_for(key) or partition,
    timestamp = timestamp ~= nil and timestamp ~= 0 and timestamp or core.time_ms(),
  }
  self.queued[#self.queued + 1] = {
    message = message,
    err_name = self:failure(message),
    on_delivery = rawget(opts, "on_delivery"),
  }
  self:serve(ready)
  return true
end

-- Delivers one queued message and runs its report.
function Memory:deliver(item)
  local m = item.message
  local err_name = item.err_name
  local report = { topic = m.topic, partition = m.partition, key = m.key,
                   value = m.value, headers = m.headers, timestamp = m.timestamp,
                   latency = 0 }
  local err
  if err_name then
    err = core.error_string(err_name)
    report.err_name, report.offset = err_name, -1001
    report.error = err_name            -- the older name of err_name (an alias, kept)
    report.error_object = core.error(err_name)
  else
    local tp = m.topic .. "\0" .. m.partition
    report.offset = self.next_offset[tp] or 0
    self.next_offset[tp] = report.offset + 1
    m.offset = report.offset
    self.messages[#self.messages + 1] = m
  end
  local callback = item.on_delivery or self.on_delivery
  if callback then
    callback(err, report)
  elseif err then
    log_line(self, "error", ("delivery failed: %s [%d]: %s (%s)")
      :format(m.topic, m.partition, err, err_name))
  else
    log_line(self, "debug", ("delivered to %s [%d] at offset %d")
      :format(m.topic, m.partition, report.offset))
  end
end

-- Serves up to n reports, oldest first; a raising callback leaves the
-- rest queued.
function Memory:serve(n)
  local served = 0
  while served < n and #self.queued > 0 do
    local item = table.remove(self.queued, 1)
    served = served + 1
    self:deliver(item)
  end
  return served
end

function Memory:poll(_, max_reports)
  check_open(self)
  return self:serve(math.min(#self.queued, max_reports or #self.queued))
end

--- Fails every message not yet reported with "_PURGE_QUEUE" (this
-- backend has nothing in flight); their reports come with the next
-- poll, flush or close, as the Kafka backend's do.
function Memory:purge(opts)
  check_open(self)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #1 to 'purge' (table expected, got " .. type(opts) .. ")", 2)
  end
  if opts == nil or opts.queued then
    for _, item in ipairs(self.queued) do item.err_name = "_PURGE_QUEUE" end
  end
  return true
end

--- Serves every waiting report. The interface's flush returns nil,
-- "timed out", "_TIMED_OUT", err (err.queued: how many are still
-- queued) on a timeout; this backend serves all at once and never
-- times out (a raising callback raises out of flush, the rest queued).
-- @treturn boolean true
function Memory:flush()
  self:poll(0)
  return true
end

function Memory:queue_length()
  check_open(self)
  return #self.queued
end

function Memory:is_closed()
  return self.closed
end

function Memory:close()
  if self.closed then return end
  self:poll(0)
  self.closed = true
end

return Memory
