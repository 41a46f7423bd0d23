--- producers: a fast, safe Kafka producer for Lua.
--
--   local producers = require("producers")
--   local p = producers.kafka.new{ bootstrap_servers = "127.0.0.1:9092" }
--   p:produce("events", "user-1", { event = "signup", ok = true })
--   p:flush(10)
--   p:close()
--
-- Backends share one interface (producers.BaseProducer): "kafka" (C, over
-- librdkafka), "nats" (C, NATS JetStream over nats.c, when built with it:
-- docs/nats.md) and "memory" (Lua, for tests); producers.register adds more.
-- @module producers

local core = require("producers.core")
local BaseProducer = require("producers.base")

local M = {
  version = core.version,
  librdkafka_version = core.librdkafka_version,
  BaseProducer = BaseProducer,
  kafka = require("producers.kafka"),
  memory = require("producers.memory"),
  log = require("producers.log"),
  --- librdkafka's mock cluster, for tests and demos: mock_cluster(brokers)
  mock_cluster = core.mock_cluster,
  --- an error object, as the Kafka backend returns them:
  -- error(name [, message [, {retriable=, fatal=, txn_requires_abort=}]])
  error = core.error,
  --- opt-in signal traps for plain Lua programs: signals.trap{"INT", "TERM"},
  -- signals.caught(), signals.restore() (docs/signals.md)
  signals = core.signals,
}

local backends = { kafka = M.kafka, memory = M.memory }

--- producers.nats (docs/nats.md), loaded on first use: a Kafka-only
-- program loads none of it.
setmetatable(M, { __index = function(_, k)
  if k == "nats" then
    M.nats = require("producers.nats")
    return M.nats
  end
end })

--- Adds a backend: class needs new(opts) and produce, poll, flush, close.
function M.register(kind, class)
  if type(kind) ~= "string" then
    error("register: kind must be a string, got " .. type(kind), 2)
  end
  backends[kind] = BaseProducer.check(class, kind)
  return class
end

--- A producer of the given kind, e.g. producers.new("kafka", {...}).
function M.new(kind, opts)
  local class = backends[kind] or (kind == "nats" and M.nats)
  if not class then
    local known = { backends.nats == nil and "nats" or nil }
    for name in pairs(backends) do known[#known + 1] = name end
    table.sort(known)
    error(("producers.new: unknown kind '%s' (known: %s)")
      :format(tostring(kind), table.concat(known, ", ")), 2)
  end
  return class.new(opts)
end

return M
