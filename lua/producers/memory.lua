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
-- such as "_MSG_TIMED_OUT" to make that message's delivery fail.
-- @classmod producers.memory

local core = require("producers.core")
local BaseProducer = require("producers.base")
local log = require("producers.log")

local Memory = BaseProducer.extend("memory")

local function now_ms()
  return os.time() * 1000
end

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
    pending = {},        -- produced, report not yet served
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

function Memory:produce(topic, key, value, opts)
  check_open(self)
  if type(topic) ~= "string" then
    error("topic: expected string, got " .. type(topic), 2)
  end
  if key ~= nil and type(key) ~= "string" then
    error("key: expected string or nil, got " .. type(key), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("opts: expected table or nil, got " .. type(opts), 2)
  end
  opts = opts or {}
  local bytes = core.encode_value(value, self.json)
  local ready = #self.pending       -- reports to serve after queueing, as Kafka does
  if ready >= self.queue_limit then
    self:serve(ready)
    return nil, "Local: Queue full", "_QUEUE_FULL"
  end
  self.pending[#self.pending + 1] = {
    message = {
      topic = topic, key = key, value = bytes, headers = opts.headers,
      partition = opts.partition or self:partition_for(key),
      timestamp = opts.timestamp or now_ms(),
    },
    on_delivery = opts.on_delivery,
  }
  self:serve(ready)
  return true
end

-- Delivers one pending message and runs its report.
function Memory:deliver(item)
  local m = item.message
  local err_name = self.fail and self.fail(m)
  local report = { topic = m.topic, partition = m.partition, key = m.key,
                   value = m.value, headers = m.headers, timestamp = m.timestamp,
                   latency = 0 }
  local err
  if err_name then
    err = core.error_string(err_name)
    report.error, report.offset = err_name, -1001
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
-- rest pending.
function Memory:serve(n)
  local served = 0
  while served < n and #self.pending > 0 do
    local item = table.remove(self.pending, 1)
    served = served + 1
    self:deliver(item)
  end
  return served
end

function Memory:poll()
  check_open(self)
  return self:serve(#self.pending)
end

function Memory:flush()
  self:poll(0)
  return true
end

function Memory:queue_length()
  check_open(self)
  return #self.pending
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
