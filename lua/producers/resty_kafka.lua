--- A drop-in for lua-resty-kafka's producer (resty.kafka.producer) on
-- producers.ngx: change the require, keep the calls.
--
--   local producer = require "producers.resty_kafka"    -- was: require "resty.kafka.producer"
--   local bp = producer:new({ { host = "127.0.0.1", port = 9092 } }, { producer_type = "async" })
--   local ok, err = bp:send("test", key, message)
--
-- What differs, on purpose: new() makes no producer per call. The first
-- call in a worker for a broker list and settings makes one librdkafka
-- producer (producers.ngx.new) and every later call with the same ones
-- gets a small handle on it, so the lua-resty-kafka habit of a producer
-- per request costs nothing. Messages go with librdkafka's defaults and
-- this library's (gzip, acks=all, idempotence, message format v2, SASL_SSL)
-- unless an option below says otherwise. error_handle runs once per failed
-- message (queue = { key, message }, index = 2), in the report timer's
-- light thread. docs/openresty.md maps each option.
-- @module producers.resty_kafka

local ngxp = require("producers.ngx")

local M = { _VERSION = "0.23-producers" }
local mt = { __index = M }

-- lua-resty-kafka option -> librdkafka property (numbers in the same unit)
local PROPERTIES = {
  request_timeout = "request.timeout.ms",
  required_acks = "acks",
  max_retry = "message.send.max.retries",
  retry_backoff = "retry.backoff.ms",
  flush_time = "linger.ms",
  batch_num = "batch.num.messages",
  batch_size = "batch.size",
  max_buffering = "queue.buffering.max.messages",
  socket_timeout = "socket.timeout.ms",
  keepalive_timeout = "connections.max.idle.ms",
  refresh_interval = "topic.metadata.refresh.interval.ms",
  client_id = "client.id",
}

-- Options read elsewhere (below), or accepted and ignored: librdkafka
-- does their job its own way (docs/openresty.md says how).
local OTHER = {
  producer_type = true, error_handle = true, ssl = true, ssl_verify = true,
  partitioner = true, api_version = true, keepalive_size = true, resolver = true,
  -- this library's, beyond lua-resty-kafka's
  config = true, send_timeout = true, close_timeout = true, poll_interval = true,
  shared_dict = true,
}

-- Errors after which the broker has surely not written the message
-- (lua-resty-kafka's `retryable`): it never left, or the broker refused it.
local MAYBE_WRITTEN = {
  _MSG_TIMED_OUT = true, _PURGE_INFLIGHT = true, _TIMED_OUT = true, REQUEST_TIMED_OUT = true,
  _TRANSPORT = true, NOT_ENOUGH_REPLICAS_AFTER_APPEND = true, _TIMED_OUT_QUEUE = true,
}

-- producers.ngx options for a broker list and producer_config.
local function options(broker_list, config)
  if type(broker_list) ~= "table" or #broker_list == 0 then
    error("producers.resty_kafka: broker_list must be a list of { host = ..., port = ... }", 3)
  end
  local servers, sasl = {}, nil
  for i, b in ipairs(broker_list) do
    if type(b) ~= "table" or type(b.host) ~= "string" or not tonumber(b.port) then
      error(("producers.resty_kafka: broker_list[%d] must be { host = string, port = number }"):format(i), 3)
    end
    servers[i] = b.host .. ":" .. tostring(b.port)
    sasl = sasl or b.sasl_config
  end
  local props = {}
  for name, value in pairs(config) do
    local property = PROPERTIES[name]
    if property then
      props[property] = value
    elseif not OTHER[name] then
      error(("producers.resty_kafka: unknown producer_config option '%s'"):format(tostring(name)), 3)
    end
  end
  local opts = {
    bootstrap_servers = table.concat(servers, ","),
    name = "resty_kafka",
    send_timeout = config.send_timeout,
    close_timeout = config.close_timeout,
    poll_interval = config.poll_interval,
    shared_dict = config.shared_dict,
  }
  if sasl then
    opts.username, opts.password = sasl.user, sasl.password
    opts.sasl_mechanism = sasl.mechanism or "PLAIN"
    props["security.protocol"] = config.ssl and "SASL_SSL" or "SASL_PLAINTEXT"
  elseif config.ssl then
    props["security.protocol"] = "SSL"
  end
  if config.ssl_verify ~= nil then
    props["enable.ssl.certificate.verification"] = config.ssl_verify and true or false
  end
  for k, v in pairs(config.config or {}) do props[k] = v end
  opts.config = props
  return opts
end

-- Calls error_handle as lua-resty-kafka does, one message at a time.
local function failure_handler(error_handle)
  return function(err, r)
    if not err then return end
    error_handle(r.topic, r.partition, { r.key or "", r.value }, 2, err, not MAYBE_WRITTEN[r.err_name])
  end
end

-- Handles made in this worker: [producer][async][error_handle or NONE].
-- Weak both ways (LuaJIT has no ephemerons): a handle nobody holds goes,
-- and is made again when asked for.
local handles = setmetatable({}, { __mode = "k" })
local NONE = {}

--- producer:new(broker_list, producer_config, cluster_name): a producer
-- handle; the librdkafka producer behind it is made once per worker per
-- broker list and settings. cluster_name only names the counters.
function M.new(self, broker_list, producer_config, cluster_name)
  local config = producer_config or {}
  local opts = options(broker_list, config)
  if cluster_name ~= nil then opts.name = "resty_kafka:" .. tostring(cluster_name) end
  local inst = ngxp.new(opts)
  local async = config.producer_type == "async"
  local modes = handles[inst]
  if not modes then
    modes = { [true] = setmetatable({}, { __mode = "kv" }), [false] = setmetatable({}, { __mode = "kv" }) }
    handles[inst] = modes
  end
  local slot = config.error_handle or NONE
  local h = modes[async][slot]
  if not h then
    h = setmetatable({
      inst = inst, async = async, offsets = {},
      produce_opts = config.error_handle
        and { on_delivery = ngxp.callback(failure_handler(config.error_handle)) } or nil,
    }, mt)
    modes[async][slot] = h
  end
  return h
end

-- A raised error as send returns it: the message without the position.
local function misuse(err)
  return (tostring(err):gsub("^[^:\n]+:%d+: ", ""))
end

--- p:send(topic, key, message): async, true once queued, or nil and
-- "buffer overflow" (the local queue is full) or another error; sync,
-- the message's offset once the broker has it, or nil and the error
-- (waits without blocking the worker; in a phase that cannot wait, nil
-- and the reason).
function M.send(self, topic, key, message)
  if self.async then
    local ok, queued, err, code = pcall(self.inst.produce, self.inst, topic, key, message, self.produce_opts)
    if not ok then return nil, misuse(queued) end
    if not queued then
      return nil, code == "_QUEUE_FULL" and "buffer overflow" or err
    end
    return true
  end
  local ok, r, err = pcall(self.inst.send, self.inst, topic, key, message)
  if not ok then return nil, misuse(r) end
  if not r then return nil, err end
  local parts = self.offsets[topic]
  if not parts then
    parts = {}
    self.offsets[topic] = parts
  end
  parts[r.partition] = r.offset
  return r.offset
end

--- p:flush(): librdkafka sends on its own (linger.ms); always true.
function M.flush(self)
  return true
end

--- p:offset(): the sum of the last offsets sync sends got, and them per
-- topic and partition.
function M.offset(self)
  local sum, details = 0, {}
  for topic, parts in pairs(self.offsets) do
    details[topic] = {}
    for partition, offset in pairs(parts) do
      sum = sum + offset
      details[topic][partition] = offset
    end
  end
  return sum, details
end

--- resty.kafka.client's place: this library asks librdkafka for no
-- metadata, so fetch_metadata and refresh return nil and a reason.
M.client = {}
local client_mt = { __index = M.client }
local NO_METADATA = "producers.resty_kafka: fetch_metadata is not supported (librdkafka keeps the metadata)"

function M.client.new(self, broker_list, client_config)
  return setmetatable({ broker_list = broker_list, config = client_config }, client_mt)
end

function M.client.fetch_metadata(self, topic)
  return nil, NO_METADATA
end

function M.client.refresh(self)
  return nil, NO_METADATA
end

return M
