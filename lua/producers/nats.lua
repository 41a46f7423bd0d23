--- The NATS JetStream backend: options and defaults in Lua, everything
-- per message in C (`producers.core`, src/nats/, over nats.c).
--
--   local p = assert(producers.nats.new{ servers = "nats://127.0.0.1:4222" })
--   p:produce("orders.eu", "user-1", { event = "signup" })
--   p:flush()
--
-- The same methods and contract as the Kafka backend where NATS has them
-- (docs/nats.md has the table): the key travels in the Producers-Key
-- header, opts.id sets Nats-Msg-Id (JetStream drops a duplicate within
-- the stream's window), a report carries stream, sequence (also as
-- offset) and duplicate. Unlike Kafka's, new connects at once: a server
-- that cannot be reached, or refuses the credentials, makes it return
-- nil, message, name, error object. A producer belongs to the Lua state
-- that created it.
-- @module producers.nats

local core = require("producers.core")
local BaseProducer = require("producers.base")
local log = require("producers.log")
local spool_options = require("producers.spool_options")

local Nats = { kind = "nats", KEY_HEADER = "Producers-Key" }

--- Whether this build has the NATS transport (libnats found at build time).
Nats.available = core.nats_new ~= nil
--- nats.c's version, when built in.
Nats.nats_c_version = core.nats_version

local NOT_BUILT = "producers.nats: built without NATS support (libnats was not found when "
  .. "producers was built; install libnats-dev and build with -DPRODUCERS_NATS=ON)"

--- Kafka-only methods: they refuse, naming why, instead of "attempt to
-- call a nil value".
local KAFKA_ONLY = {
  init_transactions = "transactions", begin_transaction = "transactions",
  commit_transaction = "transactions", abort_transaction = "transactions",
}

local refusals = {}
for name, what in pairs(KAFKA_ONLY) do
  refusals[name] = function()
    error(("producers.nats: %s is Kafka-only (%s have no NATS meaning: docs/nats.md)")
      :format(name, what), 2)
  end
end
setmetatable(refusals, { __index = BaseProducer })
if core.nats_methods then
  setmetatable(core.nats_methods, { __index = refusals })
  setmetatable(Nats, { __index = core.nats_methods })
end

local OPTIONS = {
  servers = "servers", user = "string", password = "string", token = "string",
  creds = "string", nkey = "string", nkey_seed = "string", tls = "boolean",
  ca = "string", cert = "string", key = "string", name = "string",
  connect_timeout = "seconds", reconnect_wait = "seconds", max_reconnects = "integer",
  reconnect_buffer = "integer", ack_timeout = "seconds", max_pending = "integer",
  stall_wait = "seconds",
  on_delivery = "callable", on_error = "callable", logger = "any", log_level = "string",
  gc_flush_timeout = "seconds", json = "any", serve_on_produce = "boolean",
  spool = "table",
}

local KAFKA_OPTIONS = {
  bootstrap_servers = "servers", username = "user", sasl_mechanism = false,
  on_oauthbearer_token = false, config = false, on_stats = false,
}

local function fail(message, ...)
  error("producers.nats.new: " .. message:format(...), 4)
end

local function check_value(name, want, value)
  if want == "any" then return end
  if want == "callable" then
    if not log.is_callable(value) then fail("option '%s' must be a function, got %s", name, type(value)) end
  elseif want == "seconds" then
    if type(value) ~= "number" or not (value >= 0) then
      fail("option '%s' must be a number of seconds >= 0, got %s", name, tostring(value))
    end
  elseif want == "integer" then
    if math.type and math.type(value) ~= "integer" or type(value) ~= "number" or value % 1 ~= 0 then
      fail("option '%s' must be an integer, got %s", name, tostring(value))
    end
  elseif want == "servers" then
    if type(value) ~= "string" and type(value) ~= "table" then
      fail("option 'servers' must be a string or a list of URLs, got %s", type(value))
    end
  elseif type(value) ~= want then
    fail("option '%s' must be a %s, got %s", name, want, type(value))
  end
end

--- The ways to authenticate, at most one a connection (nats.c would let
-- a later one replace an earlier one without a word).
local AUTH_METHODS = { { "token", "token" }, { "user", "user/password" }, { "nkey", "nkey" }, { "creds", "creds" } }

local function check_auth(opts)
  local given
  for _, m in ipairs(AUTH_METHODS) do
    if opts[m[1]] ~= nil then
      if given then fail("%s and %s cannot be given together", given, m[2]) end
      given = m[2]
    end
  end
end

local function check_options(opts)
  if type(opts) ~= "table" then
    error("producers.nats.new: expected a table of options, got " .. type(opts), 3)
  end
  for name, value in pairs(opts) do
    local want = OPTIONS[name]
    if not want then
      local kafka = KAFKA_OPTIONS[name]
      if kafka then fail("unknown option '%s' (did you mean '%s'?)", tostring(name), kafka) end
      if kafka == false then fail("option '%s' is Kafka-only (docs/nats.md)", tostring(name)) end
      fail("unknown option '%s' (docs/nats.md lists them)", tostring(name))
    end
    check_value(name, want, value)
  end
  if opts.servers == nil then fail("servers is required (e.g. \"nats://127.0.0.1:4222\")") end
  if (opts.user == nil) ~= (opts.password == nil) then fail("user and password must be given together") end
  check_auth(opts)
  if (opts.nkey == nil) ~= (opts.nkey_seed == nil) then fail("nkey and nkey_seed must be given together") end
  if (opts.cert == nil) ~= (opts.key == nil) then fail("cert and key must be given together") end
  local json = opts.json
  if json ~= nil and not (json == "builtin" or json == "lua-cjson" or log.is_callable(json)) then
    fail("json must be 'builtin', 'lua-cjson' or a function, got %s",
      type(json) == "string" and "'" .. json .. "'" or type(json))
  end
end

--- The list of server URLs: a list, or a string of URLs separated by commas.
local function server_list(servers)
  local list = {}
  if type(servers) == "string" then
    for url in servers:gmatch("[^,%s]+") do list[#list + 1] = url end
  else
    for i, url in ipairs(servers) do
      if type(url) ~= "string" then fail("servers[%d] must be a string, got %s", i, type(url)) end
      list[#list + 1] = url
    end
  end
  if #list == 0 then fail("servers is empty") end
  if #list > 64 then fail("servers: at most 64 URLs, got %d", #list) end
  return list
end

local function ms(seconds) return seconds and math.floor(seconds * 1000 + 0.5) end

--- The connection settings core.nats_new takes, from opts (checked).
function Nats.config(opts)
  return {
    servers = server_list(opts.servers),
    user = opts.user, password = opts.password, token = opts.token,
    creds = opts.creds, nkey = opts.nkey, nkey_seed = opts.nkey_seed,
    tls = opts.tls, ca = opts.ca, cert = opts.cert, key = opts.key,
    name = opts.name or "producers-nats",
    connect_timeout_ms = ms(opts.connect_timeout or 5),
    reconnect_wait_ms = ms(opts.reconnect_wait or 0.5),
    max_reconnects = opts.max_reconnects or -1,
    reconnect_buffer = opts.reconnect_buffer or 8 * 1024 * 1024,
    ack_timeout_ms = ms(opts.ack_timeout or 30),
    max_pending = opts.max_pending or 10000,
    stall_wait_ms = ms(opts.stall_wait or 0.01),
  }
end

--- A new NATS JetStream producer, connected.
-- @tparam table opts servers (a URL, "nats://host:4222" or "tls://...",
--   several separated by commas, or a list), user and password, or
--   token, or creds (a .creds file), or nkey and nkey_seed (its seed
--   file); tls (default: when a URL says tls://), ca, cert and key
--   (files); name (the connection's); connect_timeout (s, 5),
--   reconnect_wait (s, 0.5), max_reconnects (-1: forever),
--   reconnect_buffer (bytes kept while reconnecting, 8 MB), ack_timeout
--   (s, 30: a message without its ack by then fails "_MSG_TIMED_OUT"),
--   max_pending (acks in flight, 10000: then produce returns
--   "_QUEUE_FULL"), stall_wait (s, 0.01: how long produce waits for room
--   first); on_delivery, on_error, logger, log_level, gc_flush_timeout,
--   json, serve_on_produce as for Kafka; spool (a table: dir, max_bytes,
--   segment_bytes, fsync, fsync_interval_ms, id_header: the durable
--   spool as for Kafka, docs/spool.md; a record without opts.id is sent
--   with Nats-Msg-Id = its producers-id, unless id_header = false;
--   raises an error object named
--   SPOOL_LOCKED, SPOOL_IO or SPOOL_VERSION when it cannot be opened)
-- @treturn[1] userdata the producer
-- @treturn[2] nil, message, name, error object: no connection (e.g.
--   "_NO_SERVER", "_AUTHENTICATION", "_SSL"; the spool is closed again)
function Nats.new(opts)
  if not core.nats_new then error(NOT_BUILT, 2) end
  check_options(opts)
  spool_options.check(opts.spool, "producers.nats.new", 2)
  local conf = Nats.config(opts)
  return core.nats_new(conf, {
    logger = log.wrap(opts.logger),
    log_level = log.level(opts.log_level),
    on_delivery = opts.on_delivery,
    on_error = opts.on_error,
    gc_flush_timeout = opts.gc_flush_timeout,
    json = opts.json,
    serve_on_produce = opts.serve_on_produce,
    spool = opts.spool,
  })
end

--- Checks opts as new does, without connecting.
-- @treturn[1] true
-- @treturn[2] nil, what is wrong
function Nats.check(opts)
  if not core.nats_new then return nil, NOT_BUILT end
  local ok, err = pcall(function()
    check_options(opts)
    spool_options.check(opts.spool, "producers.nats.new", 1)
    log.level(opts.log_level)
    log.wrap(opts.logger)
    Nats.config(opts)
  end)
  if ok then return true end
  return nil, (tostring(err):gsub("^[^\n]-:%d+: ", ""))
end

return Nats
