--- Kafka (or NATS JetStream: backend = "nats") producers in nginx
-- (OpenResty, or nginx with the lua module):
-- one producer per worker, delivery callbacks in a light thread where
-- cosockets and ngx.sleep work, a send that waits without blocking the
-- worker, counters for every worker, a bounded flush at exit.
--
--   init_worker_by_lua_block {
--     require("producers.ngx").init{ bootstrap_servers = "127.0.0.1:9092", shared_dict = "producers" }
--   }
--   exit_worker_by_lua_block { require("producers.ngx").exit() }
--   log_by_lua_block { require("producers.ngx").produce("access", nil, { uri = ngx.var.uri }) }
--
-- How it works: the producer never serves reports inside produce
-- (serve_on_produce = false). An ngx.timer.every takes them as values
-- (p:reports()) and, in the timer's light thread, wakes the requests
-- waiting in send (ngx.semaphore) and runs the delivery callbacks one at a
-- time, in report order. When the worker starts leaving (reload, quit),
-- nginx runs the timer early ("premature"): it keeps serving until the
-- queue is empty or close_timeout passes, still in a light thread, while
-- the worker finishes its requests; exit() (exit_worker_by_lua) then
-- closes the producer, purging what is left, and logs one summary line.
--
-- Caveats: a producer belongs to the worker that created it: made in the
-- master (init_by_lua) it cannot work in a worker (librdkafka's threads do
-- not survive fork), so init refuses that phase. Callbacks that reach
-- the producer only at close (the worker is leaving and exit() purges
-- what is left) run inside exit_worker_by_lua, where cosockets and
-- ngx.sleep are unavailable; an error there is logged.
--
-- The files: this one is the public API and this worker's registry of
-- instances; producers/ngx/options.lua checks the options,
-- producers/ngx/instance.lua is the per-worker producer (its timer, its
-- callbacks, its close), producers/ngx/metrics.lua the counters every
-- worker shares. Only this module is public; lua_package_path's
-- ".../lua/?.lua" finds them all.
-- @module producers.ngx

local ngx = ngx
if type(ngx) ~= "table" or type(ngx.timer) ~= "table" then
  error("producers.ngx: needs nginx's lua module (OpenResty, or nginx with libnginx-mod-http-lua); "
    .. "elsewhere use producers.kafka", 2)
end

local options = require("producers.ngx.options")
local instance = require("producers.ngx.instance")
local metrics = require("producers.ngx.metrics")

local error, ipairs = error, ipairs
local worker_pid = ngx.worker.pid

local M = {}

--- Settings of the nginx side, with their defaults (init's options).
M.DEFAULTS = options.DEFAULTS
--- librdkafka properties set unless config names them (see options.lua).
M.CONFIG = options.CONFIG
M.fingerprint = options.fingerprint
--- fn as a per-message on_delivery for produce, made once per function
-- (a program that produces with the same callback may pass this in
-- opts.on_delivery: produce then copies nothing).
M.callback = instance.callback
--- ngx.semaphore (lua-resty-core), loaded on first use.
M.semaphore = instance.semaphore
--- Whether process pid exists (a dead worker's counters are folded).
-- Unknown (no ffi, no /proc) counts as alive: nothing is folded.
M.alive = metrics.alive

-- This worker's instances: by fingerprint, and in creation order.
local instances = {}
local worker = { order = {}, alive = function(pid) return M.alive(pid) end }
local order = worker.order
local default               -- init's instance

--- Checks init's options without creating anything: every check
-- producers.kafka.new makes (names, types and values of the options and
-- of each librdkafka property) and the nginx settings. For
-- init_by_lua*, so that `nginx -t` and a reload fail on a bad option:
--
--   init_by_lua_block { assert(require("producers.ngx").check(opts)) }
--
-- @treturn[1] boolean true
-- @treturn[2] nil
-- @treturn[2] string the error, naming the option or property
M.check = options.check

local function check_process(what)
  local phase = ngx.get_phase()
  if phase == "init" then
    error(("producers.ngx: %s: call it in init_worker_by_lua* (each worker, after the fork), not in "
      .. "init_by_lua*: librdkafka's threads do not survive the fork"):format(what), 3)
  end
end

-- This worker's instance for key, if it has one.
local function find(key)
  local inst = instances[key]
  if inst and inst.pid == worker_pid() and not inst.closed then return inst end
end

--- A producer for opts in this worker, made on first use and kept (one
-- per distinct options): for a second cluster, or libraries built on
-- this one. Options as init's.
function M.new(opts)
  check_process("new")
  local settings, kafka = options.split(opts)
  local key = options.fingerprint(opts)
  local inst = find(key)
  if inst then return inst end
  inst = instance.new(settings, kafka, key, worker)
  instances[key] = inst
  order[#order + 1] = inst
  return inst
end

--- In init_worker_by_lua*: this worker's producer. opts: those of
-- producers.kafka.new (bootstrap_servers, config, on_delivery, logger,
-- ...), or with backend = "nats" those of producers.nats.new (servers,
-- user, password, ...), and poll_interval, close_timeout, send_timeout,
-- max_reports, shared_dict, name. A second init with the same options
-- returns the same producer.
function M.init(opts)
  check_process("init")
  local key = options.fingerprint(opts)
  if default and default.pid == worker_pid() and not default.closed then
    if default.key == key then return default end
    error("producers.ngx: init: this worker's producer was made with other options; "
      .. "use producers.ngx.new(opts) for another one", 2)
  end
  default = M.new(opts)
  return default
end

--- This worker's producer (init's), or nil.
function M.producer()
  if default and default.pid == worker_pid() and not default.closed then return default end
end

-- init's instance, or the failure tuple ("_STATE") naming what.
local function need_default(what)
  local inst = M.producer()
  if not inst then
    return instance.fail("_STATE", ("producers.ngx: %s: no producer in this worker (call init in "
      .. "init_worker_by_lua*)"):format(what))
  end
  return inst
end

--- produce on init's producer: from any phase, never waits. Returns as
-- the instance's produce; before init (or after exit), nil, message,
-- "_STATE", error object.
function M.produce(topic, key, value, opts)
  local inst, err, name, err_object = need_default("produce")
  if not inst then return nil, err, name, err_object end
  return inst:produce(topic, key, value, opts)
end

--- send on init's producer: waits for the report where the phase allows.
-- Returns as the instance's send; before init (or after exit), nil,
-- message, "_STATE", error object.
function M.send(topic, key, value, opts)
  local inst, err, name, err_object = need_default("send")
  if not inst then return nil, err, name, err_object end
  return inst:send(topic, key, value, opts)
end

--- The counters of the producers named name (default "default") in every
-- worker: { delivered, failed, purged, queued, unreported } (unreported:
-- held by workers that died without closing, see metrics.lua's
-- fold_dead). Needs init's shared_dict; without it, this worker's
-- producer's counters. counters(name, dict) is the older name of the
-- same function (an alias, kept).
-- @treturn[1] table the counters
-- @treturn[2] nil
-- @treturn[2] string no producer of that name in this worker
function M.metrics(name, dict)
  name = name or "default"
  if not dict then
    for _, inst in ipairs(order) do
      if inst.name == name and inst.dict then dict = inst.dict break end
    end
  end
  if not dict then
    for _, inst in ipairs(order) do
      if inst.name == name and inst.pid == worker_pid() and not inst.closed then
        return inst:metrics()
      end
    end
    return nil, ("producers.ngx: metrics: no producer named '%s' in this worker"):format(name)
  end
  return metrics.read(name, dict)
end
M.counters = M.metrics

--- In exit_worker_by_lua*: closes this worker's producers (bounded by
-- close_timeout from when the worker began to leave) and logs one line
-- for each.
function M.exit()
  for _, inst in ipairs(order) do
    if inst.pid == worker_pid() then inst:close() end
  end
end

return M
