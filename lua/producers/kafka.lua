--- The Kafka backend: options and defaults in Lua, everything per message
-- in C (`producers.core`).
--
--   local p = producers.kafka.new{ bootstrap_servers = "127.0.0.1:9092" }
--   p:produce("events", "user-1", { event = "signup" })
--   p:flush()
--
-- A producer belongs to the Lua state that created it: call it from the
-- thread running that state only.
-- @module producers.kafka

local core = require("producers.core")
local BaseProducer = require("producers.base")
local log = require("producers.log")
local spool_options = require("producers.spool_options")

local Kafka = setmetatable({ kind = "kafka" }, { __index = core.methods })
setmetatable(core.methods, { __index = BaseProducer })

--- librdkafka properties every producer starts from; `config` overrides
-- any of them. The README explains each choice.
Kafka.DEFAULTS = {
  ["client.id"] = "emulator-producer",
  ["compression.type"] = "gzip",
  ["acks"] = "all",
  -- with acks=all, so a retried request neither duplicates nor reorders
  -- a partition's messages (Kafka's own producer default since 3.0)
  ["enable.idempotence"] = true,
  ["linger.ms"] = 10,
  ["batch.num.messages"] = 10000,
  ["batch.size"] = 1000000,
  ["queue.buffering.max.messages"] = 100000,
  ["queue.buffering.max.kbytes"] = 1048576,
}

local SASL_MECHANISMS = { PLAIN = true, ["SCRAM-SHA-256"] = true, ["SCRAM-SHA-512"] = true }

local OPTIONS = {
  bootstrap_servers = "string", username = "string", password = "string",
  sasl_mechanism = "string", config = "table", on_delivery = "callable",
  on_error = "callable", on_oauthbearer_token = "callable",
  logger = "any", log_level = "string", gc_flush_timeout = "number",
  json = "any", serve_on_produce = "boolean", on_stats = "callable",
  spool = "table",
}

-- A transaction's messages cannot outlive it in a spool: refused.
local function check_spool_config(spool, conf, level)
  if spool ~= nil and conf["transactional.id"] ~= nil then
    error("producers.kafka.new: option 'spool' cannot be used with transactional.id "
      .. "(a transaction's messages are not spooled)", level + 1)
  end
end

-- Checks the options whose values have a range (their types are checked
-- already): named here, not as the C core's "bad argument #-1".
local function check_ranges(opts)
  local t = opts.gc_flush_timeout
  if t ~= nil and not (t >= 0) then     -- NaN fails too
    error(("producers.kafka.new: option 'gc_flush_timeout' must be a number of seconds >= 0, got %s")
      :format(tostring(t)), 3)
  end
end

local JSON_ENCODERS = { builtin = true, ["lua-cjson"] = true }

local function check_json(json, level)
  if json ~= nil and not (JSON_ENCODERS[json] or log.is_callable(json)) then
    error(("producers.kafka.new: json must be 'builtin', 'lua-cjson' or a function, got %s")
      :format(type(json) == "string" and "'" .. json .. "'" or type(json)), level + 1)
  end
end

-- The edit distance of strings a and b (insertions, deletions,
-- substitutions), for the hint of an unknown option.
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a:byte(i) == b:byte(j) and 0 or 1))
    end
    prev = cur
  end
  return prev[#b]
end

-- What an unknown option's error adds: a dotted name is a librdkafka
-- property (its option, when it has one, or config); else the nearest
-- option's name, when one is near.
local function option_hint(name)
  if type(name) ~= "string" then return "" end
  if name:find(".", 1, true) then
    local option = name:gsub("%.", "_")
    local property = ("config = { [%q] = ... }"):format(name)
    if OPTIONS[option] then return (" (did you mean %s = ..., or %s?)"):format(option, property) end
    return (" (librdkafka's properties go in %s)"):format(property)
  end
  local best, best_d = nil, math.floor(#name / 3) + 1
  for option in pairs(OPTIONS) do
    local d = distance(name, option)
    if d < best_d or (d == best_d and best and option < best) then best, best_d = option, d end
  end
  return best and (" (did you mean '%s'?)"):format(best) or ""
end

local function check_options(opts)
  if type(opts) ~= "table" then
    error("producers.kafka.new: expected a table of options, got " .. type(opts), 3)
  end
  for name, value in pairs(opts) do
    local want = OPTIONS[name]
    if not want then
      error(("producers.kafka.new: unknown option '%s'%s"):format(tostring(name), option_hint(name)), 3)
    end
    local ok = want == "any"
      or (want == "callable" and log.is_callable(value))
      or type(value) == want
    if not ok then
      error(("producers.kafka.new: option '%s' must be a %s, got %s")
        :format(name, want == "callable" and "function" or want, type(value)), 3)
    end
  end
end

-- The first value config gives under any of names (a property and its
-- librdkafka aliases).
local function property(config, names)
  for _, name in ipairs(names) do
    if config[name] ~= nil then return config[name] end
  end
end

--- True when config asks for something librdkafka refuses beside
-- enable.idempotence: acks other than all, no retries, more than 5
-- requests in flight. The library's default then gives way, as Kafka's
-- own producer does (3.2 and later), so a configuration that was valid
-- before the default stays valid; an explicit enable.idempotence = true
-- keeps librdkafka's error.
local function conflicts_with_idempotence(config)
  local acks = property(config, { "acks", "request.required.acks" })
  local retries = property(config, { "retries", "message.send.max.retries" })
  local in_flight = property(config, { "max.in.flight", "max.in.flight.requests.per.connection" })
  return (acks ~= nil and tostring(acks):lower() ~= "all" and tonumber(acks) ~= -1)
    or (retries ~= nil and tonumber(retries) == 0)
    or (in_flight ~= nil and (tonumber(in_flight) or 0) > 5)
end

--- The librdkafka properties for opts: defaults, then security, then
-- opts.config.
function Kafka.config(opts)
  local conf = {}
  for k, v in pairs(Kafka.DEFAULTS) do conf[k] = v end
  conf["bootstrap.servers"] = opts.bootstrap_servers

  if (opts.username == nil) ~= (opts.password == nil) then
    error("producers.kafka.new: username and password must be given together", 3)
  end
  if opts.on_oauthbearer_token ~= nil then
    if opts.username ~= nil then
      error("producers.kafka.new: on_oauthbearer_token and username/password cannot be given together", 3)
    end
    if opts.sasl_mechanism ~= nil and opts.sasl_mechanism ~= "OAUTHBEARER" then
      error(("producers.kafka.new: on_oauthbearer_token selects sasl_mechanism OAUTHBEARER, got '%s'")
        :format(tostring(opts.sasl_mechanism)), 3)
    end
    conf["security.protocol"] = "SASL_SSL"
    conf["sasl.mechanisms"] = "OAUTHBEARER"
  elseif opts.username then
    local mechanism = opts.sasl_mechanism or "PLAIN"
    if not SASL_MECHANISMS[mechanism] then
      error(("producers.kafka.new: sasl_mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got '%s'")
        :format(mechanism), 3)
    end
    conf["security.protocol"] = "SASL_SSL"
    conf["sasl.mechanisms"] = mechanism
    conf["sasl.username"] = opts.username
    conf["sasl.password"] = opts.password
  else
    conf["security.protocol"] = "PLAINTEXT"
  end

  for k, v in pairs(opts.config or {}) do conf[k] = v end
  if opts.config and opts.config["enable.idempotence"] == nil
      and conflicts_with_idempotence(opts.config) then
    conf["enable.idempotence"] = nil
  end
  if not conf["bootstrap.servers"] and not conf["test.mock.num.brokers"] then
    error("producers.kafka.new: bootstrap_servers is required", 3)
  end
  return conf
end

--- A new Kafka producer.
-- @tparam table opts bootstrap_servers, username, password,
--   sasl_mechanism, on_oauthbearer_token (function(config) returning
--   token, lifetime_ms, principal [, extensions]: docs/oauthbearer.md),
--   config, on_delivery, on_error (function(err): client-level errors
--   as error objects, docs/errors.md), logger, log_level,
--   gc_flush_timeout, json ("builtin", the default, "lua-cjson", or a
--   function(table) returning the value's bytes), on_stats
--   (function(stats): librdkafka's statistics, decoded; needs
--   config["statistics.interval.ms"], docs/statistics.md), spool (a
--   table: dir, max_bytes, segment_bytes, fsync, fsync_interval_ms,
--   id_header: the durable spool, docs/spool.md; raises an error object named
--   SPOOL_LOCKED, SPOOL_IO or SPOOL_VERSION when it cannot be opened)
-- @treturn userdata the producer (methods: produce, poll, flush, purge,
--   close, queue_length, is_closed, stats, metrics, event_fd, reports and
--   the transaction methods)
function Kafka.new(opts)
  check_options(opts)
  check_ranges(opts)
  check_json(opts.json, 2)
  spool_options.check(opts.spool, "producers.kafka.new", 2)
  local conf = Kafka.config(opts)
  check_spool_config(opts.spool, conf, 2)
  local ok, p = pcall(core.new, conf, {
    logger = log.wrap(opts.logger),
    log_level = log.level(opts.log_level),
    on_delivery = opts.on_delivery,
    on_error = opts.on_error,
    on_oauthbearer_token = opts.on_oauthbearer_token,
    gc_flush_timeout = opts.gc_flush_timeout,
    json = opts.json,
    serve_on_produce = opts.serve_on_produce,
    on_stats = opts.on_stats,
    spool = opts.spool,
  })
  if ok then return p end
  -- a C function's errors carry no line: a bad property or value points
  -- at the script that called new, as the option errors above do
  error(p, type(p) == "string" and p:find("^config: ") and 2 or 0)
end

--- Checks opts as new does, up to building librdkafka's configuration,
-- without making a producer (no thread, no connection): for nginx's
-- init_by_lua, so that `nginx -t` and a reload fail on a bad option.
-- @treturn[1] true
-- @treturn[2] nil
-- @treturn[2] string what is wrong, naming the option or property
function Kafka.check(opts)
  local ok, err = pcall(function()
    check_options(opts)
    check_ranges(opts)
    check_json(opts.json, 1)
    spool_options.check(opts.spool, "producers.kafka.new", 1)
    log.level(opts.log_level)
    log.wrap(opts.logger)
    local conf = Kafka.config(opts)
    check_spool_config(opts.spool, conf, 1)
    core.check_config(conf)
  end)
  if ok then return true end
  return nil, (tostring(err):gsub("^[^\n]-:%d+: ", ""))
end

return Kafka
