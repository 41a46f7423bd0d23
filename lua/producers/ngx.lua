--- Kafka producers in nginx (OpenResty, or nginx with the lua module):
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
-- @module producers.ngx

local producers = require("producers")
local log = require("producers.log")

local ngx = ngx
if type(ngx) ~= "table" or type(ngx.timer) ~= "table" then
  error("producers.ngx: needs nginx's lua module (OpenResty, or nginx with libnginx-mod-http-lua); "
    .. "elsewhere use producers.kafka", 2)
end
local ngx_log, ERR, WARN, INFO, DEBUG = ngx.log, ngx.ERR, ngx.WARN, ngx.INFO, ngx.DEBUG

local M = {}

--- Settings of the nginx side, with their defaults (init's options).
M.DEFAULTS = {
  poll_interval = 0.01,    -- s between two takes of the waiting reports
  close_timeout = 5,       -- s a leaving worker waits for deliveries (> reconnect backoff)
  send_timeout = 10,       -- s send waits for its report, unless opts.timeout says otherwise
  max_reports = 1000,      -- reports taken at a time
}

--- librdkafka properties set unless config names them: a producer in a
-- worker that leaves (reload) has close_timeout to deliver what waits,
-- so it must retry a broker that came back sooner than that (librdkafka's
-- default backoff grows to 10 s).
M.CONFIG = {
  ["reconnect.backoff.max.ms"] = 1000,
}

local NGX_OPTIONS = {
  poll_interval = "number", close_timeout = "number", send_timeout = "number",
  max_reports = "number", shared_dict = "string", name = "string",
}

-- The phases where a light thread may wait (ngx.semaphore's wait works).
local YIELDABLE = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true,
}

local LEVELS = { debug = DEBUG, info = INFO, warn = WARN, error = ERR }

local function ngx_logger(level, message)
  ngx_log(LEVELS[level] or ERR, "producers: ", message)
end

local function traceback(e)
  return debug.traceback(tostring(e), 2)
end

-- ------------------------------------------------------------ misuse

-- This file and resty_kafka.lua beside it: a misuse error names the
-- first function up the stack that is in neither, the caller's line.
local SOURCE = debug.getinfo(1, "S")
local OURS = { [SOURCE.source] = true, [SOURCE.source:gsub("ngx%.lua$", "resty_kafka.lua")] = true }
-- the position the C core's errors carry: luaL_where of its caller, here
local OUR_WHERE = "^" .. SOURCE.short_src:gsub("%p", "%%%0") .. ":%d+: "

--- "file:line: " of the caller: the first Lua function up the stack
-- outside this module (a pcall, a C function, is passed over); "" if
-- none has a line.
local function caller_where()
  for level = 3, 50 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    if info.what ~= "C" and not OURS[info.source] then
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

-- -------------------------------------------------------------- options

-- opts split into the nginx settings (defaults filled in) and the
-- options of producers.kafka.new (config with M.CONFIG under it); raises
-- naming a bad nginx setting.
local function split(opts)
  if type(opts) ~= "table" then
    error("producers.ngx: expected a table of options, got " .. type(opts), 0)
  end
  local settings, kafka = {}, {}
  for k, v in pairs(M.DEFAULTS) do settings[k] = v end
  for name, value in pairs(opts) do
    local want = NGX_OPTIONS[name]
    if want then
      if type(value) ~= want then
        error(("producers.ngx: option '%s' must be a %s, got %s"):format(name, want, type(value)), 0)
      end
      settings[name] = value
    else
      kafka[name] = value
    end
  end
  for _, name in ipairs({ "poll_interval", "close_timeout", "send_timeout" }) do
    local v = settings[name]
    if not (v > 0 and v < math.huge) then
      error(("producers.ngx: option '%s' must be a number of seconds > 0, got %s"):format(name, tostring(v)), 0)
    end
  end
  local max = settings.max_reports
  if not (max >= 1 and max <= 1e6 and max % 1 == 0) then
    error(("producers.ngx: option 'max_reports' must be an integer from 1 to 1000000, got %s")
      :format(tostring(max)), 0)
  end
  if settings.shared_dict and ngx.shared and not ngx.shared[settings.shared_dict] then
    error(("producers.ngx: option 'shared_dict': no lua_shared_dict named '%s' (add `lua_shared_dict %s 1m;` "
      .. "to the http block)"):format(settings.shared_dict, settings.shared_dict), 0)
  end
  if kafka.config ~= nil and type(kafka.config) ~= "table" then
    error("producers.ngx: option 'config' must be a table, got " .. type(kafka.config), 0)
  end
  local config = {}
  for k, v in pairs(M.CONFIG) do config[k] = v end
  for k, v in pairs(kafka.config or {}) do config[k] = v end
  kafka.config = config
  local backoff = tonumber(config["reconnect.backoff.max.ms"])
  if backoff and backoff >= settings.close_timeout * 1000 then
    error(("producers.ngx: option 'close_timeout' (%s s) must be longer than config's "
      .. "reconnect.backoff.max.ms (%s ms), or a worker that leaves after a broker outage "
      .. "may not reconnect before it gives up"):format(tostring(settings.close_timeout), tostring(backoff)), 0)
  end
  if kafka.on_delivery ~= nil and not log.is_callable(kafka.on_delivery) then
    error("producers.ngx: option 'on_delivery' must be a function, got " .. type(kafka.on_delivery), 0)
  end
  return settings, kafka
end

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
function M.check(opts)
  local ok, settings, kafka = pcall(split, opts)
  if not ok then return nil, settings end
  kafka.serve_on_produce = false
  local ok2, err = producers.kafka.check(kafka)
  if not ok2 then return nil, "producers.ngx: " .. tostring(err) end
  return true
end

-- A stable text for opts (sorted keys; functions and tables by identity
-- inside config-free places), so init with the same options finds the
-- producer it made.
local function fingerprint(v, depth)
  local t = type(v)
  if t == "table" and (depth or 0) < 4 then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local out = {}
    for _, k in ipairs(keys) do
      out[#out + 1] = tostring(k) .. "=" .. fingerprint(v[k], (depth or 0) + 1)
    end
    return "{" .. table.concat(out, ",") .. "}"
  elseif t == "string" then
    return ("%q"):format(v)
  end
  return t .. ":" .. tostring(v)
end
M.fingerprint = fingerprint

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
-- (a program that produces with the same callback may pass this in
-- opts.on_delivery: produce then copies nothing).
function M.callback(fn)
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

-- ------------------------------------------------------------- instance

local Instance = {}
Instance.__index = Instance

local instances = {}        -- fingerprint -> instance, this worker's
local order = {}            -- instances in creation order
local default               -- init's instance

local COUNTERS = { "delivered", "failed", "purged", "queued", "unreported" }
local PUSHED = { "delivered", "failed", "purged", "queued" }   -- what a worker adds

-- kill(pid, 0) through LuaJIT's ffi (nginx's runtime), else /proc
local ffi_kill
do
  local ok, ffi = pcall(require, "ffi")
  if ok then
    pcall(ffi.cdef, "int kill(int pid, int sig);")
    ffi_kill = function(pid)
      if ffi.C.kill(pid, 0) == 0 then return true end
      return ffi.errno() ~= 3      -- ESRCH: no such process (EPERM: someone else's, alive)
    end
  end
end

--- Whether process pid exists (a dead worker's keys are folded, below).
-- Unknown (no ffi, no /proc) counts as alive: nothing is folded.
function M.alive(pid)
  if ffi_kill then return ffi_kill(pid) end
  local f = io.open("/proc/" .. pid .. "/stat")
  if f then f:close() return true end
  f = io.open("/proc/self/stat")     -- no /proc at all: unknown
  if f then f:close() return false end
  return true
end

-- Purged messages: the producer closed before they were sent (or before
-- the broker answered).
local PURGED = { _PURGE_QUEUE = true, _PURGE_INFLIGHT = true }

local function new_instance(settings, kafka, key)
  local self = setmetatable({
    key = key,
    name = settings.name or "default",
    settings = settings,
    pid = ngx.worker.pid(),
    on_delivery = kafka.on_delivery,
    dict = settings.shared_dict and ngx.shared[settings.shared_dict],
    -- totals in this worker; produced - served = queue_length
    produced = 0, failed = 0, purged = 0,
    pushed = { produced = 0, failed = 0, purged = 0, queued = 0 },
    jobs = { head = 1, tail = 0 },
    failures = {},          -- default report: failures of this take, grouped
    late = {},
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
  self.producer = producers.kafka.new(kafka)
  if self.dict then
    self.held_key = ("%s:held:%d:%d"):format(self.name, self.pid, #order + 1)
    self:fold_dead()
  end
  local ok, err = ngx.timer.every(settings.poll_interval, Instance.tick, self)
  if not ok then
    self.producer:close(0)
    error("producers.ngx: cannot start the report timer: " .. tostring(err), 0)
  end
  ngx_log(INFO, "producers: producer '", self.name, "' ready in worker ", self.pid, " (",
          tostring(kafka.bootstrap_servers), ")")
  return self
end

-- Records one report's outcome in the counters.
function Instance:count(report)
  if report.err then
    if PURGED[report.error] then self.purged = self.purged + 1 else self.failed = self.failed + 1 end
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
  if not report.err or PURGED[report.error] then return end
  local key = report.topic .. "\0" .. tostring(report.error)
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
    ngx_log(ERR, "producers: delivery failed: ", f.n, " message(s) to ", r.topic, " (first: partition ",
            r.partition, ", key ", r.key and ("%q"):format(r.key) or "nil", "): ", r.err, " (", r.error, ")")
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

-- Adds this worker's counts since the last push to the shared dict.
function Instance:push_counters()
  local dict = self.dict
  if not dict then return end
  local pushed = self.pushed
  local queued = self.closed and 0 or self.producer:queue_length()
  local served = self.produced - queued
  local delta = {
    failed = self.failed - pushed.failed,
    purged = self.purged - pushed.purged,
    queued = queued - pushed.queued,
  }
  delta.delivered = (served - pushed.produced + pushed.queued)
    - delta.failed - delta.purged
  local prefix = self.name .. ":"
  for _, name in ipairs(PUSHED) do
    local d = delta[name]
    if d ~= 0 then
      local _, err = dict:incr(prefix .. name, d, 0)
      if err then ngx_log(WARN, "producers: counters: ", err) end
    end
  end
  if delta.queued ~= 0 then
    -- what this worker holds in 'queued': folded into 'unreported' by
    -- another worker if this one dies without closing (fold_dead)
    local _, err = dict:set(self.held_key, queued)
    if err then ngx_log(WARN, "producers: counters: ", err) end
  end
  pushed.produced, pushed.failed, pushed.purged, pushed.queued =
    self.produced, self.failed, self.purged, queued
end

-- A worker that died without closing (kill -9, a crash) leaves its
-- messages in 'queued' for good: its key "<name>:held:<pid>:<n>" says how
-- many. A starting worker moves them to 'unreported' (their reports will
-- never come: some may have been delivered) and logs one line. One
-- worker folds each pid (the claim); a live pid (an old worker still
-- leaving after a reload) is left alone.
function Instance:fold_dead()
  local dict, name = self.dict, self.name
  local prefix = name .. ":held:"
  local mine = {}           -- this worker's live instances' keys (a reused pid's are not)
  for _, inst in ipairs(order) do
    if inst.pid == self.pid and not inst.closed then mine[inst.held_key or ""] = true end
  end
  for _, key in ipairs(dict:get_keys(0)) do
    local pid = key:sub(1, #prefix) == prefix and tonumber(key:sub(#prefix + 1):match("^(%d+):%d+$"))
    if pid and not mine[key] and (pid == self.pid or not M.alive(pid))
        and dict:add(key .. ":folding", true, 10) then
      local held = dict:get(key) or 0
      dict:delete(key)
      if held ~= 0 then
        dict:incr(name .. ":queued", -held, 0)
        dict:incr(name .. ":unreported", held, 0)
      end
      ngx_log(held > 0 and ERR or WARN, "producers: worker ", pid, " died without closing producer '", name,
              "' with ", held, " message(s) unreported (counted in 'unreported', no longer in 'queued')")
      dict:delete(key .. ":folding")
    end
  end
end

-- Runs the queued callbacks one at a time, in report order. One light
-- thread at a time does it; others only queue.
function Instance:run_jobs()
  if self.dispatching then return end
  self.dispatching = true
  local jobs = self.jobs
  while jobs.head <= jobs.tail do
    local fn, report = jobs[jobs.head], jobs[jobs.head + 1]
    jobs[jobs.head], jobs[jobs.head + 1] = nil, nil
    jobs.head = jobs.head + 2
    local ok, err = xpcall(fn, traceback, report.err, report)
    if not ok then
      ngx_log(ERR, "producers: delivery callback raised (topic ", report.topic, " [", report.partition,
              "] offset ", report.offset, "): ", err)
    end
  end
  jobs.head, jobs.tail = 1, 0
  self.dispatching = false
end

-- Takes every waiting report (max_reports at a time), then runs the
-- callbacks. Never raises.
function Instance:serve()
  if self.closed then return end
  local p, max = self.producer, self.settings.max_reports
  for _ = 1, 100 do
    local ok, list, logger_err = pcall(p.reports, p, max)
    if not ok then
      ngx_log(ERR, "producers: taking reports: ", list)
      break
    end
    if logger_err then ngx_log(ERR, "producers: logger raised: ", logger_err) end
    for i = 1, #list do self:take(list[i]) end
    if #list < max then break end
  end
  self:log_failures()
  self:push_counters()
  local ok, err = pcall(self.run_jobs, self)
  if not ok then
    self.dispatching = false
    ngx_log(ERR, "producers: running callbacks: ", err)
  end
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
  local step = math.min(self.settings.poll_interval, 0.05)
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

--- Queues a message (see producers.kafka's produce): never waits, never
-- runs a callback here; opts.on_delivery runs later in the timer.
-- @treturn[1] boolean true
-- @treturn[2] nil
-- @treturn[2] string message
-- @treturn[2] string error name (e.g. "_QUEUE_FULL")
-- @treturn[2] table error object (producers.Error)
-- @raise on misuse (a number key, a function value, ...), naming the
--   caller's file and line, not this module's
function Instance:produce(topic, key, value, opts)
  if self.closed then
    return nil, "producer is closed", "_DESTROY", producers.error("_DESTROY", "producer is closed")
  end
  if opts ~= nil and type(opts) == "table" then
    local cb = rawget(opts, "on_delivery")
    if cb ~= nil then
      local mt = getmetatable(cb)
      if mt ~= Callback and mt ~= Waiter then
        local copy = {}
        for k, v in pairs(opts) do copy[k] = v end
        copy.on_delivery = M.callback(cb)
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
      self.drain_scheduled = ngx.timer.at(0, drain_timer, self)
    end
  end
  return ok, err, code, err_object
end

--- Queues a message and waits for its report without blocking the worker
-- (an ngx.semaphore the timer posts). opts: produce's, plus timeout (s).
-- @treturn[1] table the report (topic, partition, offset, ...)
-- @treturn[2] nil
-- @treturn[2] string why: the delivery error, a refusal, a timeout, or
--   a phase that cannot wait
-- @treturn[2] table|string the failed report, or the refusal's error name
function Instance:send(topic, key, value, opts)
  local phase = ngx.get_phase()
  if not YIELDABLE[phase] then
    return nil, ("send: cannot wait in the %s phase; use produce"):format(phase)
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
  local waiter = setmetatable({ sema = M.semaphore().new(0) }, Waiter)
  if popts.on_delivery ~= nil then
    waiter.fn = M.callback(popts.on_delivery).fn
  end
  popts.on_delivery = waiter
  local ok, err, code = self:produce(topic, key, value, popts)
  if not ok then return nil, err, code end
  local woken = waiter.sema:wait(timeout)
  local report = waiter.report
  if not woken and not report then
    return nil, ("send: no delivery report within %s s"):format(tostring(timeout)), "_TIMED_OUT"
  end
  if report.err then return nil, report.err, report end
  return report
end

--- This producer's counters: delivered, failed, purged, queued,
-- unreported (all of nginx's workers with shared_dict; else this
-- worker's, unreported 0).
function Instance:counters()
  if self.dict then return M.counters(self.name, self.dict) end
  local queued = self.closed and 0 or self.producer:queue_length()
  return {
    delivered = self.produced - queued - self.failed - self.purged,
    failed = self.failed, purged = self.purged, queued = queued, unreported = 0,
  }
end

--- Closes the producer: waits for deliveries up to what is left of
-- close_timeout (counted from when the worker began to leave), purges
-- the rest, runs the callbacks that came in at close, logs one line.
function Instance:close()
  if self.closed then return end
  ngx.update_time()
  local started = ngx.now()
  local deadline = (self.exit_started or started) + self.settings.close_timeout
  local timeout = math.max(deadline - started, 0.1)
  local waiting = self.producer:queue_length()
  self.closing = true
  closing = self
  local ok, err = pcall(self.producer.close, self.producer, timeout)
  closing = nil
  self.closing = false
  self.closed = true
  if not ok then ngx_log(ERR, "producers: close: ", err) end
  self:log_failures()
  -- callbacks of the reports close served: no light thread here
  local jobs = self.jobs
  while jobs.head <= jobs.tail do
    local fn, report = jobs[jobs.head], jobs[jobs.head + 1]
    jobs.head = jobs.head + 2
    local cok, cerr = xpcall(fn, traceback, report.err, report)
    if not cok then
      ngx_log(ERR, "producers: delivery callback raised at exit (topic ", report.topic, "): ", cerr)
    end
  end
  self:push_counters()
  if self.dict then self.dict:delete(self.held_key) end    -- closed: holds nothing
  ngx.update_time()
  local delivered = self.produced - self.failed - self.purged
  ngx_log(self.purged > 0 and ERR or INFO, "producers: producer '", self.name, "' closed in worker ",
          ngx.worker.pid(), ": ", delivered, " delivered, ", self.failed, " failed, ", self.purged,
          " purged (not delivered); ", waiting, " were waiting at exit, closed in ",
          ("%.3f"):format(ngx.now() - started), " s")
end

-- ---------------------------------------------------------------- module

local semaphore
--- ngx.semaphore (lua-resty-core), loaded on first use.
function M.semaphore()
  semaphore = semaphore or require("ngx.semaphore")
  return semaphore
end

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
  if inst and inst.pid == ngx.worker.pid() and not inst.closed then return inst end
end

--- A producer for opts in this worker, made on first use and kept (one
-- per distinct options): for a second cluster, or libraries built on
-- this one. Options as init's.
function M.new(opts)
  check_process("new")
  local settings, kafka = split(opts)
  local key = fingerprint(opts)
  local inst = find(key)
  if inst then return inst end
  inst = new_instance(settings, kafka, key)
  instances[key] = inst
  order[#order + 1] = inst
  return inst
end

--- In init_worker_by_lua*: this worker's producer. opts: those of
-- producers.kafka.new (bootstrap_servers, config, on_delivery, logger,
-- ...) and poll_interval, close_timeout, send_timeout, max_reports,
-- shared_dict, name. A second init with the same options returns the
-- same producer.
function M.init(opts)
  check_process("init")
  local key = fingerprint(opts)
  if default and default.pid == ngx.worker.pid() and not default.closed then
    if default.key == key then return default end
    error("producers.ngx: init: this worker's producer was made with other options; "
      .. "use producers.ngx.new(opts) for another one", 2)
  end
  default = M.new(opts)
  return default
end

--- This worker's producer (init's), or nil.
function M.producer()
  if default and default.pid == ngx.worker.pid() and not default.closed then return default end
end

local function need_default(what)
  local inst = M.producer()
  if not inst then
    return nil, ("producers.ngx: %s: no producer in this worker (call init in init_worker_by_lua*)")
      :format(what), "_STATE"
  end
  return inst
end

--- produce on init's producer: from any phase, never waits.
function M.produce(topic, key, value, opts)
  local inst, err, code = need_default("produce")
  if not inst then return nil, err, code end
  return inst:produce(topic, key, value, opts)
end

--- send on init's producer: waits for the report where the phase allows.
function M.send(topic, key, value, opts)
  local inst, err, code = need_default("send")
  if not inst then return nil, err, code end
  return inst:send(topic, key, value, opts)
end

--- The counters of the producers named name (default "default") in every
-- worker: { delivered, failed, purged, queued, unreported } (unreported:
-- held by workers that died without closing, see fold_dead). Needs init's
-- shared_dict; without it, this worker's producer's counters.
function M.counters(name, dict)
  name = name or "default"
  if not dict then
    for _, inst in ipairs(order) do
      if inst.name == name and inst.dict then dict = inst.dict break end
    end
  end
  if not dict then
    for _, inst in ipairs(order) do
      if inst.name == name and inst.pid == ngx.worker.pid() and not inst.closed then
        return inst:counters()
      end
    end
    return nil, ("producers.ngx: counters: no producer named '%s' in this worker"):format(name)
  end
  local out = {}
  for _, c in ipairs(COUNTERS) do out[c] = dict:get(name .. ":" .. c) or 0 end
  return out
end

--- In exit_worker_by_lua*: closes this worker's producers (bounded by
-- close_timeout from when the worker began to leave) and logs one line
-- for each.
function M.exit()
  for _, inst in ipairs(order) do
    if inst.pid == ngx.worker.pid() then inst:close() end
  end
end

return M
