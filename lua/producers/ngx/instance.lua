--- producers.ngx's per-worker instance: one librdkafka producer, the
-- timer that takes its reports (p:reports()) and wakes the sends waiting
-- for them, the delivery callbacks run one at a time in report order,
-- the leaving worker's drain and the close at exit. Also the per-message
-- callback wrappers (Callback, Waiter) that ride with each message, and
-- the misuse errors raised at the caller's line.
--
-- Caveats: the callbacks of reports that come only at close (exit() purges
-- what is left) run inside exit_worker_by_lua, where cosockets and
-- ngx.sleep are unavailable.
-- @module producers.ngx.instance

local producers = require("producers")
local log = require("producers.log")
local metrics = require("producers.ngx.metrics")
local spool = require("producers.ngx.spool")

local ngx = ngx
local ngx_log, ERR, WARN, INFO, DEBUG = ngx.log, ngx.ERR, ngx.WARN, ngx.INFO, ngx.DEBUG
local timer_every, timer_at = ngx.timer.every, ngx.timer.at
local getmetatable, setmetatable, pairs, type, tostring = getmetatable, setmetatable, pairs, type, tostring
local pcall, xpcall, error, require, rawget = pcall, xpcall, error, require, rawget
local traceback_of, getinfo = debug.traceback, debug.getinfo
local min, max = math.min, math.max
local running = coroutine.running

local I = {}

-- The phases where a light thread may wait (ngx.semaphore's wait works).
local YIELDABLE = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true,
}

-- ngx's level for each of log.NAMES, by its number (log.LEVELS)
local NGX_LEVELS = { DEBUG, INFO, WARN, ERR }

local function ngx_logger(level, message)
  ngx_log(NGX_LEVELS[log.LEVELS[level]] or ERR, "producers: ", message)
end

local function traceback(e)
  return traceback_of(tostring(e), 2)
end

-- ------------------------------------------------------------ misuse

-- producers/ngx.lua, producers/ngx/*.lua and producers/resty_kafka.lua:
-- a misuse error names the first function up the stack that is in none
-- of them, the caller's line.
local SOURCE = getinfo(1, "S")
local DIR = SOURCE.source:gsub("ngx/instance%.lua$", "")
local function ours(source)
  if source:sub(1, #DIR) ~= DIR then return false end
  local rest = source:sub(#DIR + 1)
  return rest == "ngx.lua" or rest == "resty_kafka.lua" or rest:find("^ngx/[%w_]+%.lua$") ~= nil
end
-- the position the C core's errors carry: luaL_where of its caller, here
local OUR_WHERE = "^" .. SOURCE.short_src:gsub("%p", "%%%0") .. ":%d+: "

--- "file:line: " of the caller: the first Lua function up the stack
-- outside this module (a pcall, a C function, is passed over); "" if
-- none has a line.
local function caller_where()
  for level = 3, 50 do
    local info = getinfo(level, "Sl")
    if not info then break end
    if info.what ~= "C" and not ours(info.source) then
      return info.currentline > 0 and ("%s:%d: "):format(info.short_src, info.currentline) or ""
    end
  end
  return ""
end

--- Raises message at the caller's line (misuse: a bad argument).
local function misuse(message)
  error(caller_where() .. message, 0)
end

-- Re-raises e, an error the core raised at our line, at the caller's.
local function rethrow(e)
  if type(e) ~= "string" then error(e, 0) end
  misuse((e:gsub(OUR_WHERE, "", 1)))
end

-- ------------------------------------------------------------ callbacks

-- A per-message callback: produce's opts.on_delivery, wrapped so the
-- producer returns it with the report (p:reports()) and the timer runs
-- it. Called directly (by close, at exit), it runs there.
local Callback = {}
Callback.__index = Callback

-- A send waiting for its report.
local Waiter = {}
Waiter.__index = Waiter

-- The instance whose producer close is serving reports (at exit).
local closing

function Callback.__call(self, err, report)
  if closing then closing:take_late(self, err, report) end
end
Waiter.__call = Callback.__call

-- weak both ways: LuaJIT has no ephemerons, and a wrapper nobody holds
-- (no message in flight carries it) is made again when asked for
local callbacks = setmetatable({}, { __mode = "kv" })

--- fn as a per-message on_delivery for produce, made once per function
-- (producers.ngx.callback).
function I.callback(fn)
  if getmetatable(fn) == Callback then return fn end
  if not log.is_callable(fn) then
    misuse("producers.ngx: on_delivery must be a function, got " .. type(fn))
  end
  local cb = callbacks[fn]
  if not cb then
    cb = setmetatable({ fn = fn }, Callback)
    callbacks[fn] = cb
  end
  return cb
end

local semaphore
--- ngx.semaphore (lua-resty-core), loaded on first use.
function I.semaphore()
  semaphore = semaphore or require("ngx.semaphore")
  return semaphore
end

-- ------------------------------------------------------------- instance

local Instance = {}
Instance.__index = Instance
I.Instance = Instance

-- Purged messages: the producer closed before they were sent (or before
-- the broker answered).
local PURGED = { _PURGE_QUEUE = true, _PURGE_INFLIGHT = true }

--- The backend's producer for opts: producers.kafka's, or producers.nats's,
-- which connects at once and raises here when it cannot (init then fails
-- in init_worker_by_lua, and produce answers "_STATE" as before init).
function I.connect(backend, opts)
  local p, err, name = producers[backend].new(opts)
  if not p then
    error(("producers.ngx: cannot make the %s producer: %s (%s)"):format(backend, tostring(err), tostring(name)), 0)
  end
  return p
end

--- A new instance: its producer made, its report timer started. worker:
-- the registry of this worker's instances ({ order = {...}, alive =
-- function(pid) }), for folding dead workers' counters.
function I.new(settings, kafka, key, worker)
  local self = setmetatable({
    key = key,
    name = settings.name or "default",
    settings = settings,
    pid = ngx.worker.pid(),
    on_delivery = kafka.on_delivery,
    dict = settings.shared_dict and ngx.shared[settings.shared_dict],
    -- totals in this worker; produced - served = queue_length; left: at
    -- close, what got no report (a spool keeps it for the next worker)
    produced = 0, reported = 0, failed = 0, purged = 0, left = 0,
    pushed = { delivered = 0, failed = 0, purged = 0, queued = 0, unreported = 0 },   -- totals() at the last push
    jobs = { head = 1, tail = 0 },
    failures = {},          -- default report: failures of this take, grouped
  }, Instance)
  local user_logger = kafka.logger ~= nil and log.wrap(kafka.logger) or ngx_logger
  kafka.logger = function(level, message)
    if self.closing and message:find("closed with %d+ message%(s%) not delivered") then
      return                -- the summary line says it
    end
    return user_logger(level, message)
  end
  kafka.on_delivery = function(err, report) self:take_late(nil, err, report) end
  kafka.serve_on_produce = false
  spool.prepare(self, kafka)            -- spool.dir: this worker's own folder in it
  self.producer = I.connect(settings.backend, kafka)
  if self.dict then
    self.held_key = ("%s:held:%d:%d"):format(self.name, self.pid, #worker.order + 1)
    metrics.fold_dead(self, worker.order, worker.alive)
  end
  local ok, err = timer_every(settings.poll_interval, Instance.tick, self)
  if not ok then
    self.producer:close(0)
    error("producers.ngx: cannot start the report timer: " .. tostring(err), 0)
  end
  spool.start(self)                     -- adopts the folders of workers that are gone
  ngx_log(INFO, "producers: producer '", self.name, "' ready in worker ", self.pid, " (",
          settings.backend, " ", tostring(kafka.bootstrap_servers or kafka.servers), ")")
  return self
end

-- Records one report's outcome in the counters.
function Instance:count(report)
  self.reported = self.reported + 1
  if report.err then
    if PURGED[report.err_name] then self.purged = self.purged + 1 else self.failed = self.failed + 1 end
  end
end

function Instance:enqueue(fn, report)
  local jobs = self.jobs
  jobs[jobs.tail + 1] = fn
  jobs[jobs.tail + 2] = report
  jobs.tail = jobs.tail + 2
end

-- The default report (no on_delivery anywhere): failures, one line per
-- topic and error for each take; purged messages only in the summary.
function Instance:default_report(report)
  if not report.err or PURGED[report.err_name] then return end
  local key = report.topic .. "\0" .. tostring(report.err_name)
  local f = self.failures[key]
  if f then
    f.n = f.n + 1
  else
    self.failures[key] = { n = 1, report = report }
  end
end

function Instance:log_failures()
  for key, f in pairs(self.failures) do
    local r = f.report
    ngx_log(ERR, "producers: delivery failed: ", f.n, " message(s) to ", r.topic, " (first: ",
            r.partition ~= nil and "partition " .. r.partition .. ", " or "",      -- NATS has none
            "key ", r.key and ("%q"):format(r.key) or "nil", "): ", r.err, " (", r.err_name, ")")
    self.failures[key] = nil
  end
end

-- One report taken from the producer: its waiter woken, its callback
-- queued for the light thread, else the default report.
function Instance:take(report)
  self:count(report)
  local cb = report.on_delivery
  local mt = cb ~= nil and getmetatable(cb)
  if mt == Waiter then
    cb.report = report
    cb.sema:post(1)
    if cb.fn then self:enqueue(cb.fn, report) end
  elseif mt == Callback then
    self:enqueue(cb.fn, report)
  elseif cb ~= nil then
    self:enqueue(cb, report)
  elseif self.on_delivery then
    self:enqueue(self.on_delivery, report)
  else
    self:default_report(report)
  end
end

-- A report the core served by calling a callback (close, at exit):
-- cb is the per-message callback or nil for the producer-wide one.
function Instance:take_late(cb, err, report)
  report.err = err
  report.on_delivery = cb
  self:take(report)
end

--- This worker's totals: { delivered, failed, purged, queued,
-- unreported }. The one formula for delivered: every message produced
-- here is queued (no report taken yet), failed, purged, left without a
-- report at close (unreported: in the spool, for the next worker), or
-- else delivered.
function Instance:totals()
  local queued = self.closed and 0 or self.producer:queue_length()
  return {
    delivered = self.produced - queued - self.failed - self.purged - self.left,
    failed = self.failed, purged = self.purged, queued = queued, unreported = self.left,
  }
end

-- Runs the queued callbacks one at a time, in report order: the one job
-- runner, for the timer's light thread (serve) and for exit (close). One
-- runner at a time: a callback that re-enters (a send, a close, an
-- exit) only queues; the runner already going runs what it queued, in
-- order. take_over (close): a runner of another light thread, stopped in
-- a callback that waits (a cosocket, ngx.sleep), may never resume once
-- the worker exits; this one runs the rest. A raising callback is
-- logged and the next one runs.
function Instance:run_jobs(take_over)
  local me = running() or true          -- LuaJIT's main thread has no coroutine
  if self.dispatching and (not take_over or self.dispatching == me) then return end
  self.dispatching = me
  local jobs = self.jobs
  while jobs.head <= jobs.tail do
    local fn, report = jobs[jobs.head], jobs[jobs.head + 1]
    jobs[jobs.head], jobs[jobs.head + 1] = nil, nil
    jobs.head = jobs.head + 2
    local ok, err = xpcall(fn, traceback, report.err, report)
    if not ok then
      ngx_log(ERR, "producers: delivery callback raised", self.closed and " at exit" or "", " (topic ",
              report.topic, " [", report.partition, "] offset ", report.offset, "): ", err)
    end
  end
  jobs.head, jobs.tail = 1, 0
  self.dispatching = false
end

-- run_jobs, never raising (an error of ngx.log's, say): the runner is
-- free again after.
function Instance:run_jobs_safely(take_over)
  local ok, err = pcall(self.run_jobs, self, take_over)
  if not ok then
    self.dispatching = false
    ngx_log(ERR, "producers: running callbacks: ", err)
  end
end

-- Takes every waiting report (max_reports at a time), then runs the
-- callbacks. Never raises.
function Instance:serve()
  if self.closed then return end
  local p, most = self.producer, self.settings.max_reports
  for _ = 1, 100 do
    local ok, list, logger_err = pcall(p.reports, p, most)
    if not ok then
      ngx_log(ERR, "producers: taking reports: ", list)
      break
    end
    if logger_err then ngx_log(ERR, "producers: logger raised: ", logger_err) end
    for i = 1, #list do self:take(list[i]) end
    if #list < most then break end
  end
  self:log_failures()
  metrics.push(self)
  self:run_jobs_safely()
end

-- Serves until nothing waits or close_timeout since the worker began to
-- leave: in a light thread (the premature timer, or a zero-delay timer
-- started by a produce while the worker leaves).
function Instance:drain()
  self.drain_scheduled = nil
  if self.draining or self.closed then return end
  self.draining = true
  ngx.update_time()
  self.exit_started = self.exit_started or ngx.now()
  local deadline = self.exit_started + self.settings.close_timeout
  local step = min(self.settings.poll_interval, 0.05)
  while not self.closed do
    self:serve()
    if self.producer:queue_length() == 0 and self.jobs.head > self.jobs.tail then break end
    ngx.update_time()
    if ngx.now() >= deadline then break end
    ngx.sleep(step)
  end
  self.draining = false
end

function Instance.tick(premature, self)
  if self.closed then return end
  if premature or ngx.worker.exiting() then
    return self:drain()
  end
  self:serve()
end

local function drain_timer(premature, self)
  self:drain()
end

-- The failure tuple: nil, message, name, error object (producers.Error).
local function fail(name, message)
  return nil, message, name, producers.error(name, message)
end
I.fail = fail

--- Queues a message (see producers.kafka's produce): never waits, never
-- runs a callback here; opts.on_delivery runs later in the timer. A
-- closed instance (the worker is exiting: exit() closed it while a
-- request still runs) answers "_DESTROY" where producers.kafka raises:
-- the request did nothing wrong, and a log_by_lua that raised would lose
-- the message without a word (docs/openresty.md).
-- @treturn[1] boolean true
-- @treturn[2] nil
-- @treturn[2] string message
-- @treturn[2] string error name (e.g. "_QUEUE_FULL", "_DESTROY")
-- @treturn[2] table error object (producers.Error)
-- @raise on misuse (a number key, a function value, ...), naming the
--   caller's file and line, not this module's
function Instance:produce(topic, key, value, opts)
  if self.closed then return fail("_DESTROY", "producer is closed") end
  if opts ~= nil and type(opts) == "table" then
    local cb = rawget(opts, "on_delivery")
    if cb ~= nil then
      local mt = getmetatable(cb)
      if mt ~= Callback and mt ~= Waiter then
        local copy = {}
        for k, v in pairs(opts) do copy[k] = v end
        copy.on_delivery = I.callback(cb)
        opts = copy
      end
    end
  end
  -- misuse (a number key, a function value) raises at the caller's line
  local called, ok, err, code, err_object = pcall(self.producer.produce, self.producer, topic, key, value, opts)
  if not called then rethrow(ok) end
  if ok then
    self.produced = self.produced + 1
    if not self.draining and not self.drain_scheduled and ngx.worker.exiting() then
      -- zero-delay timers still start while the worker leaves
      self.drain_scheduled = timer_at(0, drain_timer, self)
    end
  end
  return ok, err, code, err_object
end

-- send's answer to a failed delivery: its error object carries the
-- report (err.report).
local function delivery_failed(report)
  local err = report.error_object or producers.error(report.err_name, report.err)
  err.report = report
  return nil, report.err, report.err_name, err
end

--- Queues a message and waits for its report without blocking the worker
-- (an ngx.semaphore the timer posts). opts: produce's, plus timeout (s).
-- @treturn[1] table the report (topic, partition, offset, ...)
-- @treturn[2] nil
-- @treturn[2] string why: the delivery error, a refusal, a timeout, or
--   a phase that cannot wait
-- @treturn[2] string the error name: the delivery's ("_MSG_TIMED_OUT",
--   ...), the refusal's ("_QUEUE_FULL", ...), "_TIMED_OUT" (no report
--   within the timeout), "_STATE" (a phase that cannot wait)
-- @treturn[2] table the error object (producers.Error); err.report is
--   the failed delivery's report
function Instance:send(topic, key, value, opts)
  local phase = ngx.get_phase()
  if not YIELDABLE[phase] then
    return fail("_STATE", ("send: cannot wait in the %s phase; use produce"):format(phase))
  end
  local timeout = self.settings.send_timeout
  local popts = {}
  if opts ~= nil then
    if type(opts) ~= "table" then
      misuse("opts: expected table or nil, got " .. type(opts))
    end
    for k, v in pairs(opts) do popts[k] = v end
    if opts.timeout ~= nil then
      timeout = opts.timeout
      if type(timeout) ~= "number" or not (timeout > 0) then
        misuse("opts.timeout: expected a number of seconds > 0, got " .. tostring(timeout))
      end
    end
    popts.timeout = nil
  end
  local waiter = setmetatable({ sema = I.semaphore().new(0) }, Waiter)
  if popts.on_delivery ~= nil then
    waiter.fn = I.callback(popts.on_delivery).fn
  end
  popts.on_delivery = waiter
  local ok, err, name, err_object = self:produce(topic, key, value, popts)
  if not ok then return nil, err, name, err_object end
  local woken = waiter.sema:wait(timeout)
  local report = waiter.report
  if not woken and not report then
    return fail("_TIMED_OUT", ("send: no delivery report within %s s"):format(tostring(timeout)))
  end
  if report.err then return delivery_failed(report) end
  return report
end

--- This producer's counters: delivered, failed, purged, queued,
-- unreported (all of nginx's workers with shared_dict; else this
-- worker's, unreported 0). inst:counters() is its older name (an alias).
function Instance:metrics()
  if self.dict then return metrics.read(self.name, self.dict) end
  return self:totals()
end
Instance.counters = Instance.metrics

--- Closes the producer: waits for deliveries up to what is left of
-- close_timeout (counted from when the worker began to leave), purges
-- the rest, runs the callbacks that came in at close, logs one line.
function Instance:close()
  if self.closed then return end
  ngx.update_time()
  local started = ngx.now()
  local deadline = (self.exit_started or started) + self.settings.close_timeout
  local timeout = max(deadline - started, 0.1)
  local waiting = self.producer:queue_length()
  self.closing = true
  closing = self
  local ok, err = pcall(self.producer.close, self.producer, timeout)
  closing = nil
  self.closing = false
  self.closed = true
  self.left = self.produced - self.reported   -- a spool's, on disk: no report here
  if not ok then ngx_log(ERR, "producers: close: ", err) end
  self:log_failures()
  -- callbacks of the reports close served (no light thread here: exit),
  -- or, when a callback closed, by the runner already going
  self:run_jobs_safely(true)
  metrics.push(self)
  if self.dict then self.dict:delete(self.held_key) end    -- closed: holds nothing
  ngx.update_time()
  local t = self:totals()
  ngx_log(self.purged > 0 and ERR or INFO, "producers: producer '", self.name, "' closed in worker ",
          ngx.worker.pid(), ": ", t.delivered, " delivered, ", self.failed, " failed, ", self.purged,
          " purged (not delivered); ", self.left > 0 and self.left .. " left in the spool for the next worker; " or "",
          waiting, " were waiting at exit, closed in ",
          ("%.3f"):format(ngx.now() - started), " s")
end

return I
