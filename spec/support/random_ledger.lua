-- The bookkeeping of spec/core/random_spec.lua: what each produce call
-- promised (accepted, refused) and what each report brought, checked as
-- reports arrive (fields, duplicates) and at the end (exactly one report
-- per accepted message, none for a refused one). Errors raised to the
-- script are sorted into expected outcomes and problems.
local inputs = require("support.random_inputs")

local Ledger = {}
Ledger.__index = Ledger

local KEEP_PROBLEMS = 25   -- problems kept verbatim per kind; all are counted

--- Marks a callback's deliberate error; an error carrying it means the
-- call that raised it did its own work first (README: "When produce
-- raises that way, its own message was queued all the same").
Ledger.BOOM = "random-boom"

--- A json function's deliberate error: produce must refuse its message.
Ledger.ENCODER_FAILURE = "random-encoder-failure"

-- Errors the library raises on purpose when a hostile call is refused
-- (close or flush from a callback, close during another method).
local REFUSALS = { "not allowed", "busy", "in use", "from a delivery callback" }

function Ledger.new()
  return setmetatable({
    messages = {},
    last_id = 0,
    outcomes = {},               -- what the API returned or raised: name -> count
    problems = { reports = {}, errors = {} },
    problem_counts = { reports = 0, errors = 0 },
    max_error_length = 0,
  }, Ledger)
end

function Ledger:problem(kind, fmt, ...)
  self.problem_counts[kind] = self.problem_counts[kind] + 1
  local list = self.problems[kind]
  if #list < KEEP_PROBLEMS then list[#list + 1] = fmt:format(...) end
end

function Ledger:count(outcome, n)
  self.outcomes[outcome] = (self.outcomes[outcome] or 0) + (n or 1)
end

--- What an error raised to the script means: "boom" (a callback's
-- deliberate error, its call's work done), "refused" (a hostile call
-- turned down, or a json function's failure), "closed" (the producer was
-- closed under the caller), "masked" (LuaJIT only: an error raised in a
-- finalizer that ran while LuaJIT handled another error comes out as
-- "error in error handling", whatever it was: plain LuaJIT does the same
-- with xpcall, docs/reliability.md), or "unexpected".
function Ledger.classify(err)
  err = tostring(err)
  if jit and err == "error in error handling" then return "masked" end
  if err:find(Ledger.ENCODER_FAILURE, 1, true) then return "refused" end
  if err:find(Ledger.BOOM, 1, true) then return "boom" end
  if err:find("producer is closed", 1, true) then return "closed" end
  for _, pattern in ipairs(REFUSALS) do
    if err:find(pattern, 1, true) then return "refused" end
  end
  return "unexpected"
end

--- Records an error a call raised (where: "poll", "close from callback"...);
-- returns its class.
function Ledger:raised(where, err)
  local class = Ledger.classify(err)
  local text = tostring(err)
  self:count(where .. " raised " .. class)
  if #text > self.max_error_length then self.max_error_length = #text end
  if class == "unexpected" then
    self:problem("errors", "%s raised: %s", where, text:sub(1, 600))
  end
  return class
end

function Ledger:new_id()
  self.last_id = self.last_id + 1
  return self.last_id
end

--- A message about to be produced. route: "own" (its own callback),
-- "key" (the producer's callback finds it by key) or "anon" (counted per
-- producer only); expect: what its report must show (nil: not checked);
-- input: nil, or "bad" (must be refused) or "odd" (see random_inputs).
function Ledger:open(id, producer, route, expect, input)
  self.messages[id] = { producer = producer, route = route, expect = expect, input = input,
                        state = "producing", reports = 0 }
end

--- What produce did with message id: "accepted", "refused" or "unknown"
-- (it raised an unexpected error).
function Ledger:settle(id, state, detail)
  local m = self.messages[id]
  m.state = state
  self:count("produce " .. state)
  if state == "accepted" and m.input == "bad" then
    self:problem("reports", "#%d: produce accepted bad input (%s)", id, detail or "?")
  end
  if m.route == "anon" then
    local p = m.producer
    if state == "accepted" then p.anon_accepted = p.anon_accepted + 1 end
    if state == "unknown" then p.anon_unknown = p.anon_unknown + 1 end
  end
end

local function same_pairs(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i][1] ~= b[i][1] or a[i][2] ~= b[i][2] then return false end
  end
  return true
end

local function show(s)
  if s == nil then return "nil" end
  return ("%q"):format(#s > 60 and s:sub(1, 60) .. "..." or s)
end

-- The report's fields against what produce was given.
function Ledger:check_fields(id, e, err, r)
  local function differs(field, got, want)
    local m = self.messages[id]
    self:problem("reports", "#%d: report.%s is %s, produced %s (producer: %s)", id, field,
      show(tostring(got)), show(tostring(want)), m and m.producer and m.producer.description or "?")
  end
  if r.topic ~= e.topic then differs("topic", r.topic, e.topic) end
  if e.partition and r.partition ~= e.partition then differs("partition", r.partition, e.partition) end
  if r.key ~= e.key then differs("key", r.key, e.key) end
  if inputs.fingerprint(r.value) ~= e.value then
    differs("value", inputs.fingerprint(r.value), e.value)
  end
  local list = r.header_list or {}
  if e.headers_sorted then list = inputs.sorted_pairs(r.headers or {}) end
  if not same_pairs(list, e.headers or {}) then differs("header_list", #list .. " header(s)", #(e.headers or {})) end
  if (err == nil) ~= (r.error == nil) then differs("error", r.error, err) end
end

--- A report for message id (err as the callback got it; report nil for
-- a callback declared function(err)).
function Ledger:report(id, err, report)
  local m = self.messages[id]
  if not m then
    self:problem("reports", "a report for #%s, never produced", tostring(id))
    return
  end
  m.reports = m.reports + 1
  self:count(err and "report failed" or "report delivered")
  if m.reports > 1 then
    self:problem("reports", "#%d: report number %d", id, m.reports)
  elseif report and m.expect then
    self:check_fields(id, m.expect, err, report)
  end
  m.expect = nil            -- checked: let it go
end

--- A report of a message counted per producer only (its producer's
-- function(err) callback, or the default report's log line).
function Ledger:anon_report(producer, err)
  producer.anon_reported = producer.anon_reported + 1
  self:count(err and "report failed" or "report delivered")
end

--- n messages of producer counted per producer that close purged
-- without a report line (the default report logs them in one summary).
function Ledger:anon_purged(producer, n)
  producer.anon_reported = producer.anon_reported + n
  self:count("report purged silently", n)
end

--- A report by the key it carries, for the producer-wide callback.
function Ledger:report_by_key(err, report)
  local id = inputs.id_of_key(report.key)
  if not id then
    self:problem("reports", "a report for a key without an id: %s", show(report.key))
    return
  end
  self:report(id, err, report)
end

-- How many reports message m may have had: exactly one when accepted by
-- a producer closed properly and reporting successes; at most one when
-- its producer was collected unclosed, reports failures only, or the
-- call raised something unexpected; none when refused.
local function allowed_reports(m)
  if m.state == "refused" then return 0, 0 end
  if m.state == "unknown" or m.producer.dropped then return 0, 1 end
  if m.state ~= "accepted" then return 0, 1 end
  if m.producer.only_errors then return 0, 1 end
  return 1, 1
end

--- Invariant (a), once every producer is closed: adds a problem per
-- message with a wrong number of reports, and per producer whose
-- counted reports do not add up.
function Ledger:check_counts(producers)
  for id, m in pairs(self.messages) do
    if m.route ~= "anon" then
      local least, most = allowed_reports(m)
      if m.reports < least or m.reports > most then
        self:problem("reports", "#%d (%s, %s, producer #%d: %s): %d report(s)", id, m.state, m.route,
          m.producer.serial, m.producer.description .. ", closed by " .. tostring(m.producer.closed_by), m.reports)
      end
    end
  end
  for _, p in ipairs(producers) do
    local least = (p.dropped or p.only_errors) and 0 or p.anon_accepted
    if p.anon_reported < least or p.anon_reported > p.anon_accepted + p.anon_unknown then
      self:problem("reports", "producer #%d (%s): %d counted report(s) for %d accepted (%d unknown)",
        p.serial, p.description .. ", closed by " .. tostring(p.closed_by), p.anon_reported, p.anon_accepted, p.anon_unknown)
    end
  end
end

--- Messages produced, and the outcomes as "name=count" sorted.
function Ledger:summary()
  local names = {}
  for name in pairs(self.outcomes) do names[#names + 1] = name end
  table.sort(names)
  for i, name in ipairs(names) do names[i] = name .. "=" .. self.outcomes[name] end
  return ("%d messages; %s"):format(self.last_id, table.concat(names, ", "))
end

return Ledger
