-- The NATS world of spec/nats/random_world_spec.lua: random_world.lua's driver
-- and re-entries on producers.nats over a real nats-server (the specs'
-- "plain" server, support/nats.lua), whose faults are the server's: down
-- and up again, restarted (JetStream on file storage keeps the stream).
-- What differs from the Kafka world: the options (servers, ack_timeout,
-- a small max_pending now and then, reconnect_wait), messages without a
-- partition and mostly with keys and header values a NATS header can
-- carry (no CR, LF, NUL: produce refuses those, "_INVALID_ARG"), header
-- lists compared by name (nats.c keeps each name's values in order, not
-- the order between names), an empty value reported as none (a NATS
-- message has a payload, maybe empty, and no tombstone), some
-- sent to a subject no stream captures ("NO_STREAM") or to a stream that
-- is full ("STREAM_FULL"), and a producer that cannot be made while the
-- server is down (producers.nats.new connects at once).
local producers = require("producers")
local system = require("system")
local inputs = require("support.random_inputs")
local World = require("support.random_world")
local N = require("support.nats")

local NatsWorld = setmetatable({}, { __index = World })
NatsWorld.__index = NatsWorld

-- The subjects: two captured by the stream, one by none, one by a small
-- stream that fills up (discard new).
NatsWorld.SUBJECTS = { "random-a", "random-b" }
NatsWorld.NO_STREAM = "random-none"
NatsWorld.FULL = "random-full"
NatsWorld.FULL_STREAM = "RANDOM_FULL"   -- max_msgs 20, discard new: the spec makes it

local FAULT_GAP = 1.5           -- s between two faults at least (each takes the server's time)

--- A world on the server at url, seeded (trace as World.new's).
function NatsWorld.new(url, seed, trace)
  local topics = {}
  for _, s in ipairs(NatsWorld.SUBJECTS) do topics[s] = 1 end
  local self = setmetatable(World.new(nil, topics, seed, trace), NatsWorld)
  self.url, self.server_down, self.last_fault = url, false, -math.huge
  self.acks = {}                -- stream -> sequence -> { subject, key, when }, of delivered reports
  self.faults = 0
  return self
end

--- producers.nats.new's options: the common ones over the server.
function NatsWorld:producer_options(record)
  local rng = self.rng
  record.only_errors = false      -- every NATS report is served
  record.route = rng:weighted{ report = 5, count = 2, log = 2 }
  local opts = self:common_options(record)
  opts.servers = self.url
  opts.connect_timeout = 5
  opts.ack_timeout = rng:pick{ 1.5, 5, 10 }
  opts.reconnect_wait = rng:pick{ 0.05, 0.2 }
  opts.stall_wait = rng:pick{ 0, 0.005 }
  if rng:chance(0.2) then opts.max_pending = rng:int(5, 50) end
  return opts
end

--- The producer, or nil when it cannot be made: only while the server
-- is down may it fail, with "_NO_SERVER".
function NatsWorld:new_producer(opts)
  local p, err, name = producers.nats.new(opts)
  if p then return p end
  self.ledger:count("new refused " .. tostring(name))
  if not self.server_down or name ~= "_NO_SERVER" then
    self.ledger:problem("errors", "producers.nats.new failed with the server %s: %s (%s)",
      self.server_down and "down" or "up", tostring(err), tostring(name))
  end
end

-- s without the bytes a NATS header cannot carry
local function header_safe(s)
  return s and (s:gsub("[%z\r\n]", "_"))
end

-- A header list sorted by name, each name's values in their order: NATS
-- headers are a map of names to lists of values (nats.c keeps no order
-- between names), so this is what a report's header_list can keep.
local function by_name(list)
  local keyed = {}
  for i, h in ipairs(list) do keyed[i] = { h[1], h[2], i } end
  table.sort(keyed, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[3] < b[3]) end)
  for i, h in ipairs(keyed) do keyed[i] = { h[1], h[2] } end
  return keyed
end

--- World's message, made NATS-shaped: no partition (but in a misuse),
-- keys and header values a header can carry (but now and then), some
-- subjects no stream or a full stream captures.
function NatsWorld:message(record, rng)
  local msg = World.message(self, record, rng)
  local e = msg.expect or {}
  if msg.opts and msg.input_name ~= "fraction_partition" and msg.input_name ~= "huge_partition" then
    msg.opts.partition, e.partition = nil, nil
  end
  if rng:chance(0.95) then
    msg.key = header_safe(msg.key)
    e.key = msg.key
    local headers = msg.opts and rawget(msg.opts, "headers")
    if type(headers) == "table" and msg.input_name ~= "number_header" then
      for name, v in pairs(headers) do
        if type(v) == "table" then v[2] = header_safe(v[2]) else headers[name] = header_safe(v) end
      end
      if e.headers_sorted then e.headers = inputs.sorted_pairs(headers) end
    end
  end
  if e.headers and not e.headers_sorted then e.headers = by_name(e.headers) end
  -- no tombstone in NATS: an empty payload, reported as no value
  if e.value == "" then e.value = inputs.fingerprint(nil) end
  if msg.input_name ~= "nul_in_topic" then
    local where = rng:weighted{ stream = 94, none = 3, full = 3 }
    if where ~= "stream" then
      msg.topic = where == "none" and NatsWorld.NO_STREAM or NatsWorld.FULL
      e.topic = msg.topic
    end
  end
  return msg
end

------------------------------------------------------------------------
-- The acks: each delivered report names a sequence of its own

-- What the driver did to the server so far: faults seen by a report.
function NatsWorld:fault_note()
  return ("after %d fault(s)%s"):format(self.faults, self.server_down and ", server down" or "")
end

-- Records a delivered report's stream and sequence (two reports naming
-- one sequence is a problem: no message carries an id, none is a
-- duplicate), and puts its header_list in by_name's order.
function NatsWorld:ack_seen(err, report)
  if type(report) ~= "table" then return end
  if report.header_list then report.header_list = by_name(report.header_list) end
  if err or report.stream == nil then return end
  local key = tostring(report.stream) .. "#" .. tostring(report.sequence)
  local acks = self.acks[report.stream] or {}
  self.acks[report.stream] = acks
  local first = acks[report.sequence]
  if first then
    self.ledger:problem("reports", "two delivered reports name %s: key m%s (%s), then key m%s (%s)", key,
      tostring(inputs.id_of_key(first.key)), first.when, tostring(inputs.id_of_key(report.key)), self:fault_note())
  end
  if report.offset ~= report.sequence or report.duplicate ~= false then
    self.ledger:problem("reports", "report %s: offset %s, duplicate %s", key, tostring(report.offset),
      tostring(report.duplicate))
  end
  acks[report.sequence] = { subject = report.topic, key = report.key, when = self:fault_note() }
end

function NatsWorld:own_report(record, id, err, report)
  self:ack_seen(err, report)
  return World.own_report(self, record, id, err, report)
end

function NatsWorld:keyed_report(record, err, report)
  self:ack_seen(err, report)
  return World.keyed_report(self, record, err, report)
end

function NatsWorld:report_value(record, r)
  if not r.on_delivery then self:ack_seen(r.err, r) end    -- else own_report sees it
  return World.report_value(self, record, r)
end

------------------------------------------------------------------------
-- The server's faults: at most one every FAULT_GAP seconds

local Step = setmetatable({}, { __index = World.Step })
NatsWorld.Step = Step
NatsWorld.STEPS = {
  produce = 30, burst = 10, poll = 14, flush = 7, reports = 4, close = 3, drop = 1, collect = 3, purge = 1,
  litter = 8, gc_pace = 2, inspect = 3, server_down = 1, server_up = 2, server_restart = 1,
}

-- Whether a fault may come now (and if so, the clock starts again).
function NatsWorld:fault_due()
  local now = system.monotime()
  if now - self.last_fault < FAULT_GAP then return false end
  self.last_fault = now
  return true
end

function Step.server_down(self)
  if self.server_down or not self:fault_due() then return end
  self:note("driver", "server down")
  N.down("plain")
  self.server_down, self.faults = true, self.faults + 1
end

function Step.server_up(self)
  if not self.server_down then return end
  self:note("driver", "server up")
  N.up("plain")
  self.server_down = false
end

function Step.server_restart(self)
  if self.server_down or not self:fault_due() then return end
  self:note("driver", "server restart")
  N.restart("plain")
  self.faults = self.faults + 1
end

--- Heals the world: the server up.
function NatsWorld:heal()
  if self.server_down then Step.server_up(self) end
end

return NatsWorld
