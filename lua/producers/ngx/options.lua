--- producers.ngx's options: the nginx settings with their defaults, the
-- librdkafka properties set for nginx, the checks of init's, new's and
-- check's options, and the fingerprint that finds the producer made for
-- the same options. No state: every function here is pure but for
-- reading ngx.shared (does the named lua_shared_dict exist).
-- @module producers.ngx.options

local producers = require("producers")
local log = require("producers.log")

local ngx = ngx
local error, pairs, ipairs, type, tostring, tonumber = error, pairs, ipairs, type, tostring, tonumber
local concat, sort = table.concat, table.sort
local huge = math.huge

local O = {}

--- Settings of the nginx side, with their defaults (init's options).
O.DEFAULTS = {
  poll_interval = 0.01,    -- s between two takes of the waiting reports
  close_timeout = 5,       -- s a leaving worker waits for deliveries (> reconnect backoff)
  send_timeout = 10,       -- s send waits for its report, unless opts.timeout says otherwise
  max_reports = 1000,      -- reports taken at a time
  spool_adopt_interval = 5, -- s between two tries at the spools of workers that are gone (ngx/spool.lua)
}

--- librdkafka properties set unless config names them: a producer in a
-- worker that leaves (reload) has close_timeout to deliver what waits,
-- so it must retry a broker that came back sooner than that (librdkafka's
-- default backoff grows to 10 s).
O.CONFIG = {
  ["reconnect.backoff.max.ms"] = 1000,
}

local NGX_OPTIONS = {
  poll_interval = "number", close_timeout = "number", send_timeout = "number",
  max_reports = "number", shared_dict = "string", name = "string", spool_adopt_interval = "number",
}

-- Raises naming a bad nginx setting (error level 0: init and check put
-- it in their own words).
local function fail(fmt, ...)
  error(("producers.ngx: " .. fmt):format(...), 0)
end

-- The nginx settings of opts, type-checked, over the defaults; the rest
-- of opts (producers.kafka.new's options) in kafka.
local function settings_of(opts)
  local settings, kafka = {}, {}
  for k, v in pairs(O.DEFAULTS) do settings[k] = v end
  for name, value in pairs(opts) do
    local want = NGX_OPTIONS[name]
    if want then
      if type(value) ~= want then
        fail("option '%s' must be a %s, got %s", name, want, type(value))
      end
      settings[name] = value
    else
      kafka[name] = value
    end
  end
  return settings, kafka
end

-- Checks the values of the settings (their types are checked already).
local function check_settings(settings)
  for _, name in ipairs({ "poll_interval", "close_timeout", "send_timeout", "spool_adopt_interval" }) do
    local v = settings[name]
    if not (v > 0 and v < huge) then
      fail("option '%s' must be a number of seconds > 0, got %s", name, tostring(v))
    end
  end
  local max = settings.max_reports
  if not (max >= 1 and max <= 1e6 and max % 1 == 0) then
    fail("option 'max_reports' must be an integer from 1 to 1000000, got %s", tostring(max))
  end
  local dict = settings.shared_dict
  if dict and ngx.shared and not ngx.shared[dict] then
    fail("option 'shared_dict': no lua_shared_dict named '%s' (add `lua_shared_dict %s 1m;` "
      .. "to the http block)", dict, dict)
  end
end

-- kafka.config with O.CONFIG under it; checks close_timeout against the
-- reconnect backoff it ends up with.
local function config_of(settings, kafka)
  if kafka.config ~= nil and type(kafka.config) ~= "table" then
    fail("option 'config' must be a table, got %s", type(kafka.config))
  end
  local config = {}
  for k, v in pairs(O.CONFIG) do config[k] = v end
  for k, v in pairs(kafka.config or {}) do config[k] = v end
  local backoff = tonumber(config["reconnect.backoff.max.ms"])
  if backoff and backoff >= settings.close_timeout * 1000 then
    fail("option 'close_timeout' (%s s) must be longer than config's reconnect.backoff.max.ms (%s ms), "
      .. "or a worker that leaves after a broker outage may not reconnect before it gives up",
      tostring(settings.close_timeout), tostring(backoff))
  end
  return config
end

--- opts split into the nginx settings (defaults filled in) and the
-- options of producers.kafka.new (config with O.CONFIG under it); raises
-- naming a bad nginx setting.
function O.split(opts)
  if type(opts) ~= "table" then
    fail("expected a table of options, got %s", type(opts))
  end
  local settings, kafka = settings_of(opts)
  check_settings(settings)
  kafka.config = config_of(settings, kafka)
  if kafka.on_delivery ~= nil and not log.is_callable(kafka.on_delivery) then
    fail("option 'on_delivery' must be a function, got %s", type(kafka.on_delivery))
  end
  return settings, kafka
end

--- Checks init's options without creating anything (producers.ngx.check).
-- @treturn[1] boolean true
-- @treturn[2] nil
-- @treturn[2] string the error, naming the option or property
function O.check(opts)
  local ok, settings, kafka = pcall(O.split, opts)
  if not ok then return nil, settings end
  kafka.serve_on_produce = false
  local ok2, err = producers.kafka.check(kafka)
  if not ok2 then return nil, "producers.ngx: " .. tostring(err) end
  return true
end

--- A stable text for opts (sorted keys; functions and tables by identity
-- below four levels), so init with the same options finds the producer
-- it made.
local function fingerprint(v, depth)
  local t = type(v)
  if t == "table" and (depth or 0) < 4 then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local out = {}
    for _, k in ipairs(keys) do
      out[#out + 1] = tostring(k) .. "=" .. fingerprint(v[k], (depth or 0) + 1)
    end
    return "{" .. concat(out, ",") .. "}"
  elseif t == "string" then
    return ("%q"):format(v)
  end
  return t .. ":" .. tostring(v)
end
O.fingerprint = fingerprint

return O
