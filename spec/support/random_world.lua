-- The driver of spec/core/random_spec.lua: a few producers on a mock
-- cluster, driven by random steps (produce, poll, flush, close and a new
-- producer, a producer dropped unclosed, garbage collection, faults
-- pushed on the cluster, brokers down and up or slow, leaders moved),
-- while their callbacks, loggers, finalizers and option tables re-enter
-- the API at random.
-- Every call is protected; what it returned or raised goes to the ledger.
local producers = require("producers")
local inputs = require("support.random_inputs")
local Ledger = require("support.random_ledger")

local World = {}
World.__index = World

-- Re-entry stops nesting deeper than this; the spec asserts a far lower
-- depth, so this only keeps a failing library from recursing for long.
World.DEPTH_GUARD = 24

local SLOTS = 4               -- producers alive at once

-- What a re-entry does, by where it runs (weights).
local REACTIONS = {
  callback = { none = 80, produce = 10, poll = 4, flush = 2, close = 2, close_other = 1, reports = 1,
               inspect = 1, purge = 1 },
  on_error = { none = 70, produce = 10, poll = 8, flush = 4, close = 4, purge = 2, inspect = 2 },
  logger = { none = 88, produce = 3, poll = 3, flush = 2, close = 3, inspect = 1 },
  encoder = { none = 80, produce = 6, poll = 4, flush = 3, close = 5, reports = 1, inspect = 1 },
  finalizer = { none = 50, produce = 25, poll = 15, flush = 8, close = 1, reports = 4, inspect = 8,
                purge = 2 },
  index = { none = 40, produce = 20, poll = 15, close = 20, inspect = 5 },
}
-- How often a callback or logger raises after its work (an option
-- table's __index and a finalizer never do; a json function's failure
-- is its own, see World:encoder).
local RAISE_CHANCE = { callback = 0.04, logger = 0.02, on_error = 0.04 }

-- The driver's steps (weights).
local STEPS = {
  produce = 30, burst = 10, poll = 14, flush = 7, reports = 4, close = 3, drop = 1, collect = 3, purge = 1,
  litter = 8, gc_pace = 2, retriable_errors = 4, fatal_errors = 3, broker_down = 1,
  broker_up = 3, leader_move = 2, slow_broker = 1, inspect = 3,
}

-- purge's options: each purged message still gets its one report
local PURGES = { { queued = true }, { in_flight = true }, { queued = true, in_flight = true }, {} }

local RETRIABLE = { "NOT_LEADER_FOR_PARTITION", "LEADER_NOT_AVAILABLE", "REQUEST_TIMED_OUT",
                    "NOT_ENOUGH_REPLICAS" }
local NOT_RETRIABLE = { "INVALID_RECORD", "TOPIC_AUTHORIZATION_FAILED", "MSG_SIZE_TOO_LARGE" }

--- A world over cluster, with topics (name -> partitions), seeded.
-- trace: write every action to stderr (to see the last ones before a crash).
function World.new(cluster, topics, seed, trace)
  local rng = inputs.Rng.new(seed)
  local self = setmetatable({
    cluster = cluster, topics = topics, topic_names = {}, trace = trace,
    rng = rng,                  -- the driver's stream
    chaos = rng:fork(),         -- re-entries' stream: their timing varies from run to run
    ledger = Ledger.new(),
    pool = {}, records = {},    -- slot -> producer, slot -> its record
    history = {},               -- every producer's record, in order
    down = {},                  -- broker id -> true
    leaderless = {},            -- {topic, partition} moved to no leader
    depth = 0, max_depth = 0, calm = false,
    hooks = {},                 -- finalizers reach the world through hooks.world
  }, World)
  self.hooks.world = self
  for name in pairs(topics) do self.topic_names[#self.topic_names + 1] = name end
  table.sort(self.topic_names)
  return self
end

function World:note(where, what, slot, id)
  if self.trace then
    io.stderr:write(("[17] %s %s%s%s depth=%d\n"):format(where, what, slot and (" slot " .. slot) or "",
      id and (" #" .. id) or "", self.depth))
  end
end

------------------------------------------------------------------------
-- Producers

-- The producer-wide report (record.route): "report", a callback that
-- takes the report and finds the message by its key; "count", a
-- function(err) that can only count; "log", none: the default report's
-- log lines are counted.
function World:producer_callback(record)
  if record.route == "log" then return nil end
  if record.route == "count" then
    return function(err) self:counted_report(record, err) end
  end
  local shape = self.rng:int(1, 3)
  if shape == 1 then
    return function(err, report) self:keyed_report(record, err, report) end
  elseif shape == 2 then
    return function(...) self:keyed_report(record, ...) end
  end
  return setmetatable({}, { __call = function(_, err, report) self:keyed_report(record, err, report) end })
end

-- What a log line says about the default report's messages: the
-- report of one, or (close's summary line) how many close failed,
-- of which those that no report line showed are the purged ones.
function World:read_log_line(record, level, message)
  if message:find("^delivered to ") or message:find("^delivery failed: ") then
    local err = level == "error" and message or nil
    self:failure_seen(record, err)
    self.ledger:anon_report(record, err)
  end
  local lost = message:match(" closed with (%d+) message%(s%) not delivered$")
  if lost then
    self.ledger:anon_purged(record, tonumber(lost) - record.close_failures)
  end
end

-- Counts the failures of record's messages that close served.
function World:failure_seen(record, err)
  if err and record.closing > 0 then record.close_failures = record.close_failures + 1 end
end

-- A logger, as a function or as an object with a method per level.
function World:logger(record, as_object)
  local function log(level, message)
    if record.route == "log" then self:read_log_line(record, level, message) end
    self:react(record, "logger")
  end
  if not as_object then return log end
  local object = {}
  for _, level in ipairs{ "debug", "info", "warn", "error" } do
    object[level] = function(_, message) log(level, message) end
  end
  return object
end

-- A json function: re-enters the API, then encodes as lua-cjson does
-- (so the report's value is checked the same way); now and then it
-- fails, and produce must refuse the message.
function World:encoder(record)
  return function(value)
    self:react(record, "encoder")
    if self.chaos:chance(0.01) then error(Ledger.ENCODER_FAILURE, 0) end
    return inputs.encode(value)
  end
end

-- The options every backend takes: encoder, serving, logger, callbacks.
function World:common_options(record)
  local rng = self.rng
  return {
    json = rng:pick{ "builtin", "lua-cjson", "function" },
    serve_on_produce = rng:chance(0.75),
    gc_flush_timeout = rng:pick{ 0, 0.1 },
    log_level = record.route == "log" and "debug" or rng:pick{ "debug", "info", "warn" },
    logger = self:logger(record, rng:chance(0.5)),
    on_delivery = self:producer_callback(record),
    on_error = rng:chance(0.3) and function(err)    -- client errors, as error objects
      if type(err) ~= "table" or type(err.name) ~= "string" or tostring(err) ~= err.message then
        self.ledger:problem("errors", "on_error got %s", tostring(err))
      end
      self:react(record, "on_error")
    end or nil,
  }
end

-- producers.kafka.new's options: the common ones over the mock cluster.
function World:producer_options(record)
  local rng = self.rng
  local config = {
    ["linger.ms"] = rng:pick{ 0, 5, 50 },
    ["message.timeout.ms"] = rng:pick{ 1500, 5000, 10000 },
  }
  if rng:chance(0.5) then config["enable.idempotence"] = rng:chance(0.5) end   -- else the default
  if rng:chance(0.2) then config["queue.buffering.max.messages"] = rng:int(5, 50) end
  if rng:chance(0.2) then config["batch.num.messages"] = rng:int(1, 20) end
  if rng:chance(0.25) then config["delivery.report.only.error"] = true end
  record.only_errors = config["delivery.report.only.error"] == true
  record.route = rng:weighted{ report = 5, count = 2, log = 2 }
  local opts = self:common_options(record)
  opts.bootstrap_servers, opts.config = self.cluster:bootstraps(), config
  return opts
end

--- The backend's producer for opts (a world of another backend replaces
-- it; nil when it could not be made).
function World:new_producer(opts)
  return producers.kafka.new(opts)
end

--- A new producer in slot.
function World:spawn(slot)
  local record = { serial = #self.history + 1, slot = slot, anon_accepted = 0, anon_reported = 0,
                   anon_unknown = 0, closing = 0, close_failures = 0 }
  local opts = self:producer_options(record)
  record.description = ("json=%s, route=%s%s%s"):format(opts.json, record.route,
    record.only_errors and ", only.error" or "", opts.serve_on_produce and "" or ", serve_on_produce=false")
  if opts.json == "function" then opts.json = self:encoder(record) end
  self:note("driver", "new producer #" .. record.serial .. " " .. record.description, slot)
  self.history[record.serial] = record
  self.pool[slot], self.records[slot] = self:new_producer(opts), record
end

--- Replaces the producers that were closed (by the driver or by a
-- re-entry).
function World:refill()
  for slot = 1, SLOTS do
    local p = self.pool[slot]
    if not p or p:is_closed() then self:spawn(slot) end
  end
end

------------------------------------------------------------------------
-- Calls into the API, protected, their outcomes recorded

--- Calls method on the producer in slot; records what it raised.
function World:call(slot, method, where, ...)
  local p, record = self.pool[slot], self.records[slot]
  if not p then return end
  self:note(where, method, slot)
  if method == "close" then
    if record.closing == 0 then record.close_failures = 0 end
    record.closing = record.closing + 1
  end
  local ok, err = pcall(p[method], p, ...)
  if method == "close" then
    record.closing = record.closing - 1
    if p:is_closed() and not record.closed_by then record.closed_by = where end
  end
  if ok then
    self.ledger:count(where .. " " .. method .. " returned")
  else
    self.ledger:raised(where .. " " .. method, err)
  end
end

-- A message's delivery route: its own callback (in one of three
-- shapes), the producer's callback by key, or counted per producer.
function World:route(record, msg, rng)
  if rng:chance(0.4) or (record.route == "report" and msg.key == nil) then
    local id, takes_report = msg.id, rng:int(1, 3)
    if takes_report == 1 then
      msg.expect = nil            -- function(err) sees no report
      msg.opts.on_delivery = function(err) self:own_report(record, id, err) end
    elseif takes_report == 2 then
      msg.opts.on_delivery = function(err, report) self:own_report(record, id, err, report) end
    else
      msg.opts.on_delivery = setmetatable({}, { __call = function(_, err, report)
        self:own_report(record, id, err, report)
      end })
    end
    return "own"
  end
  if record.route == "report" then return "key" end
  msg.expect = nil
  return "anon"
end

-- Options whose __index (run by produce for every option it reads and
-- the table lacks) re-enters the API.
function World:hostile_options(msg, record)
  setmetatable(msg.opts, { __index = function() self:react(record, "index") end })
end

-- Makes msg a bad or odd input (random_inputs.BAD_INPUTS, ODD_INPUTS).
function World:misuse(msg, rng)
  local name = rng:weighted{ fraction_partition = 1, number_header = 1, function_in_value = 1,
                             nan_in_value = 1, bad_callback = 1, huge_partition = 1, nul_in_topic = 1 }
  local make = inputs.BAD_INPUTS[name] or inputs.ODD_INPUTS[name]
  msg.input, msg.input_name = inputs.BAD_INPUTS[name] and "bad" or "odd", name
  make(msg, msg.expect or {})
end

--- A random message for record's producer: {id, topic, key, value,
-- opts, expect, route, input}.
function World:message(record, rng)
  local id = self.ledger:new_id()
  local topic = rng:pick(self.topic_names)
  local value, bytes = inputs.value(rng, id)
  local msg = { id = id, topic = topic, key = inputs.key(rng, id), value = value, opts = {} }
  msg.expect = { topic = topic, key = msg.key, value = inputs.fingerprint(bytes) }
  if rng:chance(0.2) then
    msg.opts.partition = rng:int(0, self.topics[topic] - 1)
    msg.expect.partition = msg.opts.partition
  end
  -- (the report's timestamp is the broker's: the mock cluster's is 1234)
  if rng:chance(0.1) then msg.opts.timestamp = 1700000000000 + rng:int(0, 1000000) end
  if rng:chance(0.3) then
    local headers, list = inputs.headers(rng)
    msg.opts.headers, msg.expect.headers, msg.expect.headers_sorted = headers, list, headers ~= list
  end
  msg.route = self:route(record, msg, rng)
  if rng:chance(0.03) then self:misuse(msg, rng) end
  if rng:chance(0.04) then self:hostile_options(msg, record) end
  if not next(msg.opts) and not getmetatable(msg.opts) and rng:chance(0.5) then msg.opts = nil end
  return msg
end

-- What produce's result means for its message: accepted, refused, or
-- unknown (it raised an unexpected error).
function World:produce_outcome(msg, where, ok, result, message, code)
  local ledger = self.ledger
  if ok and result == true then return "accepted" end
  if ok then
    if result ~= nil or type(message) ~= "string" or type(code) ~= "string" then
      ledger:problem("errors", "produce returned %s, %s, %s", tostring(result), tostring(message), tostring(code))
    end
    ledger:count("produce returned " .. tostring(code))
    return "refused"
  end
  if msg.input and Ledger.classify(result) ~= "boom" then
    ledger:count("produce raised on " .. msg.input_name)
    return "refused"
  end
  local class = ledger:raised(where .. " produce", result)
  if class == "boom" then return "accepted" end      -- queued all the same
  -- unexpected or masked: queued or not, it gets at most one report
  return (class == "unexpected" or class == "masked") and "unknown" or "refused"
end

--- Produces a random message on the producer in slot and records it.
function World:produce(slot, where)
  local p, record = self.pool[slot], self.records[slot]
  if not p then return end
  local msg = self:message(record, where == "driver" and self.rng or self.chaos)
  self.ledger:open(msg.id, record, msg.route, msg.expect, msg.input)
  self:note(where, "produce", slot, msg.id)
  local ok, result, message, code = pcall(p.produce, p, msg.topic, msg.key, msg.value, msg.opts)
  self.ledger:settle(msg.id, self:produce_outcome(msg, where, ok, result, message, code), msg.input_name)
end

-- A report taken as a value by p:reports: handled as an event loop
-- would, by its own callback or as the producer's callback would.
function World:report_value(record, r)
  if r.on_delivery then
    local ok, err = pcall(r.on_delivery, r.err, r)
    if not ok then self.ledger:raised("reports' on_delivery", err) end
  elseif record.route == "report" then
    self:failure_seen(record, r.err)
    self.ledger:report_by_key(r.err, r)
  else
    self:failure_seen(record, r.err)
    self.ledger:anon_report(record, r.err)
  end
end

--- Takes up to a random number of reports as values and handles them.
function World:take_reports(slot, where, rng)
  local p, record = self.pool[slot], self.records[slot]
  if not p then return end
  self:note(where, "reports", slot)
  local ok, list, logger_error = pcall(p.reports, p, rng:int(1, 50))
  if not ok then
    self.ledger:raised(where .. " reports", list)
    return
  end
  self.ledger:count(where .. " reports returned")
  for _, r in ipairs(list) do self:report_value(record, r) end
  if logger_error then self.ledger:raised(where .. " reports' logger", logger_error) end
end

--- Reads the producer's state every way there is.
function World:inspect(slot, where)
  local p = self.pool[slot]
  if not p then return end
  self:note(where, "inspect", slot)
  local ok, err = pcall(function()
    p:queue_length()
    p:stats()
    p:event_fd()
  end)
  if not ok then self.ledger:raised(where .. " inspect", err) end
  tostring(p)
  p:is_closed()
end

------------------------------------------------------------------------
-- Reports and re-entry

function World:own_report(record, id, err, report)
  self:failure_seen(record, err)
  self.ledger:report(id, err, report)
  self:react(record, "callback")
end

function World:keyed_report(record, err, report)
  self:failure_seen(record, err)
  self.ledger:report_by_key(err, report)
  self:react(record, "callback")
end

function World:counted_report(record, err)
  self:failure_seen(record, err)
  self.ledger:anon_report(record, err)
  self:react(record, "callback")
end

-- The slot of record's producer, unless it has been replaced.
function World:own_slot(record)
  if record and self.records[record.slot] == record then return record.slot end
end

-- The slot a re-entry acts on: its own producer's half the time.
function World:target(record)
  local own = self:own_slot(record)
  if own and self.chaos:chance(0.5) then return own end
  return self.chaos:int(1, SLOTS)
end

function World:reenter(action, record, where)
  local slot = self:target(record)
  if action == "produce" then
    self:produce(slot, where)
  elseif action == "poll" then
    self:call(slot, "poll", where, 0)
  elseif action == "flush" then
    self:call(slot, "flush", where, self.chaos:pick{ 0, 0.01 })
  elseif action == "close" then           -- its own producer, which is serving it
    self:call(self:own_slot(record) or slot, "close", where, 0)
  elseif action == "close_other" then
    self:call(slot, "close", where, 0)
  elseif action == "reports" then
    self:take_reports(slot, where, self.chaos)
  elseif action == "purge" then
    self:call(slot, "purge", where, self.chaos:pick(PURGES))
  elseif action == "inspect" then
    self:inspect(slot, where)
  end
end

--- A callback, logger, finalizer or option table (where) running for
-- record's producer (nil for a finalizer): re-enters the API at random,
-- then may raise.
function World:react(record, where)
  if self.calm then return end
  self.depth = self.depth + 1
  if self.depth > self.max_depth then self.max_depth = self.depth end
  if self.depth <= World.DEPTH_GUARD then
    local action = self.chaos:weighted(REACTIONS[where])
    if action ~= "none" then self:reenter(action, record, where) end
  end
  self.depth = self.depth - 1
  if RAISE_CHANCE[where] and self.chaos:chance(RAISE_CHANCE[where]) then
    error(Ledger.BOOM .. " from a " .. where, 0)
  end
end

local finalized = require("support.finalizer")   -- an object whose finalizer runs f

--- Garbage whose finalizers re-enter the API wherever the collector
-- happens to run them (inside produce, a callback, the encoder...).
function World:litter(n)
  local hooks = self.hooks
  for _ = 1, n do
    finalized(function()
      local world = hooks.world
      if world then world:react(nil, "finalizer") end
    end)
  end
end

------------------------------------------------------------------------
-- The driver's steps

local Step = {}

function Step.produce(self) self:produce(self.rng:int(1, SLOTS), "driver") end

-- Many messages on one producer (sometimes hundreds: one batch of
-- reports), until it is closed under the driver.
function Step.burst(self)
  local slot = self.rng:int(1, SLOTS)
  local n = self.rng:chance(0.1) and self.rng:int(100, 400) or self.rng:int(2, 40)
  for _ = 1, n do
    if not self.pool[slot] or self.pool[slot]:is_closed() then return end
    self:produce(slot, "driver")
  end
end

function Step.poll(self)
  local max = self.rng:chance(0.3) and self.rng:int(1, 20) or nil   -- poll's bound on reports
  self:call(self.rng:int(1, SLOTS), "poll", "driver", self.rng:pick{ 0, 0.001, 0.01, 0.05 }, max)
end

function Step.purge(self)
  self:call(self.rng:int(1, SLOTS), "purge", "driver", self.rng:pick(PURGES))
end

function Step.flush(self)
  self:call(self.rng:int(1, SLOTS), "flush", "driver", self.rng:pick{ 0, 0.01, 0.1, 0.3 })
end

function Step.reports(self) self:take_reports(self.rng:int(1, SLOTS), "driver", self.rng) end

function Step.close(self)
  self:call(self.rng:int(1, SLOTS), "close", "driver", self.rng:pick{ 0, 0.05, 0.2, 1 })
end

-- A producer dropped without close: collected later, its reports not
-- served (by design), its refs released.
function Step.drop(self)
  local slot = self.rng:int(1, SLOTS)
  self:note("driver", "drop", slot)
  self.records[slot].dropped = true
  self.pool[slot] = nil
end

function Step.collect() collectgarbage() end

function Step.litter(self) self:litter(self.rng:int(1, 10)) end

-- The collector's pause: 100 collects all the time, so finalizers run
-- inside the library's allocations.
function Step.gc_pace(self)
  collectgarbage("setpause", self.rng:pick{ 100, 120, 200 })
end

function Step.retriable_errors(self)
  local errors = {}
  for i = 1, self.rng:int(1, 5) do errors[i] = self.rng:pick(RETRIABLE) end
  self:note("driver", "push " .. table.concat(errors, " "))
  self.cluster:push_request_errors(0, table.unpack and table.unpack(errors) or unpack(errors))
end

function Step.fatal_errors(self)
  local errors = {}
  for i = 1, self.rng:int(1, 3) do errors[i] = self.rng:pick(NOT_RETRIABLE) end
  self:note("driver", "push " .. table.concat(errors, " "))
  self.cluster:push_request_errors(0, table.unpack and table.unpack(errors) or unpack(errors))
end

function Step.broker_down(self)
  local id = self.rng:int(1, 3)
  if self.down[id] or next(self.down, next(self.down)) then return end   -- at most two down
  self:note("driver", "broker_down " .. id)
  self.cluster:broker_down(id)
  self.down[id] = true
end

function Step.broker_up(self)
  local id = next(self.down)
  if not id then return end
  self:note("driver", "broker_up " .. id)
  self.cluster:broker_up(id)
  self.down[id] = nil
end

-- A partition's leader moves to another broker, or (rarely) to none.
function Step.leader_move(self)
  local topic = self.rng:pick(self.topic_names)
  local partition = self.rng:int(0, self.topics[topic] - 1)
  local broker = self.rng:chance(0.1) and -1 or self.rng:int(1, 3)
  self:note("driver", ("leader of %s [%d] -> %d"):format(topic, partition, broker))
  self.cluster:partition_set_leader(topic, partition, broker)
  if broker == -1 then self.leaderless[#self.leaderless + 1] = { topic, partition } end
end

function Step.slow_broker(self)
  local id, rtt = self.rng:int(1, 3), self.rng:pick{ 0, 0, 50, 300 }
  self:note("driver", ("broker %d rtt %d ms"):format(id, rtt))
  self.cluster:broker_set_rtt(id, rtt)
end

function Step.inspect(self) self:inspect(self.rng:int(1, SLOTS), "driver") end

-- A world of another backend has steps of its own (its faults).
World.STEPS, World.Step = STEPS, Step

--- Runs random steps until the clock passes deadline (os.time()).
function World:drive(deadline)
  while os.time() < deadline do
    self:refill()
    self.Step[self.rng:weighted(self.STEPS)](self)
  end
end

--- Heals the cluster: every broker up and fast, every partition led.
function World:heal()
  for id in pairs(self.down) do self.cluster:broker_up(id) end
  self.down = {}
  self.cluster:broker_set_rtt(-1, 0)
  for _, leaderless in ipairs(self.leaderless) do
    self.cluster:partition_set_leader(leaderless[1], leaderless[2], 1)
  end
  self.leaderless = {}
end

--- Heals the cluster and closes every producer: once with re-entries
-- still on (callbacks act while close serves them), then calm.
function World:finish()
  self:heal()
  for slot = 1, SLOTS do self:call(slot, "close", "driver", 1) end
  self.calm = true
  collectgarbage("setpause", 200)
  for slot = 1, SLOTS do
    local p = self.pool[slot]
    if p and not p:is_closed() then self:call(slot, "close", "finish", 5) end
    if p and not p:is_closed() then
      self.ledger:problem("errors", "producer #%d could not be closed", self.records[slot].serial)
    end
  end
  self.pool, self.records = {}, {}
  self.hooks.world = nil
  self.ledger:check_counts(self.history)
end

return World
