-- Control (issue #16): p:purge{queued, in_flight} fails what librdkafka
-- holds, one failure report per message; p:poll(timeout, max_reports)
-- bounds the reports one call serves, so an event loop keeps its latency.
local producers = require("producers")
local H = require("helpers")

local BUSY = "not allowed from a delivery callback, logger or encoder of the same producer"

-- Counts reports by error name ("ok" for a delivery), and each key's.
local function tally()
  local t = { by_error = {}, by_key = {}, n = 0 }
  function t.cb(err, r)
    local name = r.error or "ok"
    t.n = t.n + 1
    t.by_error[name] = (t.by_error[name] or 0) + 1
    t.by_key[r.key] = (t.by_key[r.key] or 0) + 1
  end
  return t
end

-- A producer whose broker never answers: its messages stay queued.
local function unreachable(opts)
  opts = opts or {}
  opts.bootstrap_servers = "127.0.0.1:1"
  opts.logger = function() end
  return producers.kafka.new(opts)
end

describe("purge", function()
  it("fails every queued message once with _PURGE_QUEUE", function()
    local t = tally()
    local p = unreachable({ on_delivery = t.cb })
    for i = 1, 5 do assert.is_true(p:produce(H.topic("purge"), "k" .. i, "v")) end
    assert.is_true(p:purge({ queued = true }))
    assert.is_true(p:flush(10))
    assert.same({ _PURGE_QUEUE = 5 }, t.by_error)
    for i = 1, 5 do assert.equal(1, t.by_key["k" .. i]) end
    assert.equal(0, p:queue_length())
    p:close(0)
  end)

  it("purges both kinds without options, neither with an empty table", function()
    local t = tally()
    local p = unreachable({ on_delivery = t.cb })
    assert.is_true(p:produce(H.topic("purge"), "a", "v"))
    assert.is_true(p:purge({}))
    local ok, message, _, err = p:flush(0.2)
    local left = err.queued
    assert.same({ nil, "timed out", 1 }, { ok, message, left })
    assert.is_true(p:purge({ in_flight = true }))      -- nothing is in flight
    assert.equal(0, p:poll(0.2))
    assert.is_true(p:purge())
    assert.is_true(p:flush(10))
    assert.same({ _PURGE_QUEUE = 1 }, t.by_error)
    p:close(0)
  end)

  it("fails a message in flight with _PURGE_INFLIGHT", function()
    local m = producers.mock_cluster(1)
    local topic = H.topic("inflight")
    assert.is_true(m:create_topic(topic, 1, 1))
    local sent, t = 0, tally()
    local p = H.producer(m, { on_delivery = t.cb, log_level = "debug",
                              logger = function(_, line) if line:find("Produce MessageSet", 1, true) then sent = sent + 1 end end,
                              config = { debug = "msg", ["linger.ms"] = 0 } })
    assert.is_true(p:produce(topic, "warm", "v"))   -- connected, producer id known
    assert.is_true(p:flush(10))
    m:broker_set_rtt(-1, 5000)                      -- the next answer takes 5 s
    assert.is_true(p:produce(topic, "k", "v"))
    assert.is_true(H.wait_until(function() return sent == 2 end, 10, function() p:poll(0.05) end))
    assert.is_true(p:purge({ in_flight = true }))
    assert.is_true(p:flush(10))
    assert.same({ ok = 1, _PURGE_INFLIGHT = 1 }, t.by_error)
    p:close(0)
    m:close()
  end)

  it("may be called from a delivery callback: each message still gets one report", function()
    local t = tally()
    local p
    p = unreachable({ config = { ["message.timeout.ms"] = 200 }, on_delivery = function(err, r)
      t.cb(err, r)
      if r.key == "first" then p:purge() end
    end })
    local topic = H.topic("purge-cb")
    assert.is_true(p:produce(topic, "first", "v", { partition = 0 }))
    assert.is_true(p:flush(10))                     -- times out "first"
    for i = 1, 3 do assert.is_true(p:produce(topic, "k" .. i, "v")) end
    assert.is_true(p:produce(topic, "first", "v"))  -- its report purges the others
    assert.is_true(p:flush(10))
    assert.equal(5, t.n)
    for i = 1, 3 do assert.equal(1, t.by_key["k" .. i]) end
    p:close(0)
  end)

  it("names a bad option", function()
    local p = unreachable()
    assert.has_error(function() p:purge({ inflight = true }) end,
      "purge: unknown option 'inflight' (queued, in_flight)")
    assert.has_error(function() p:purge({ queued = 1 }) end,
      "purge: option 'queued' must be a boolean, got number")
    assert.has_error(function() p:purge(5) end,
      "bad argument #1 to 'purge' (table expected, got number)")
    p:close(0)
    assert.has_error(function() p:purge() end, "producer is closed")
  end)

  it("in the memory backend fails what is pending with _PURGE_QUEUE", function()
    local t = tally()
    local p = producers.memory.new({ on_delivery = t.cb })
    p.serve = function() return 0 end
    assert.is_true(p:produce("t", "a", "v"))
    p.serve = nil
    assert.is_true(p:purge())
    p:flush()
    assert.same({ _PURGE_QUEUE = 1 }, t.by_error)
  end)
end)

describe("poll with max_reports", function()
  local m
  setup(function() m = producers.mock_cluster(1) end)
  teardown(function() m:close() end)

  -- A producer with n messages delivered and their reports waiting.
  local function with_reports_waiting(n, opts)
    opts = opts or {}
    opts.serve_on_produce = false
    local p = H.producer(m, opts)
    local topic = H.topic("max")
    for i = 1, n do assert.is_true(p:produce(topic, "k" .. i, "v")) end
    return p
  end

  it("serves at most max_reports per call, the rest in later calls, none twice", function()
    local t = tally()
    local p = with_reports_waiting(10, { on_delivery = t.cb })
    local calls = {}
    assert.is_true(H.wait_until(function()
      local n = p:poll(0.1, 3)
      if n > 0 then calls[#calls + 1] = n end
      return t.n == 10
    end, 10))
    for _, n in ipairs(calls) do assert.is_true(n <= 3, table.concat(calls, ",")) end
    assert.is_true(#calls >= 4, table.concat(calls, ","))
    for i = 1, 10 do assert.equal(1, t.by_key["k" .. i]) end
    p:close(0)
  end)

  it("leaves the rest ready: the next poll(0) serves them without waiting", function()
    local t = tally()
    local p = with_reports_waiting(4, { on_delivery = t.cb })
    assert.is_true(H.wait_until(function() return p:poll(0.1, 1) == 1 end, 10))
    assert.is_true(H.wait_until(function() p:poll(0.1, 1); return t.n == 2 end, 10))
    -- whatever is left of the batch is served at once, with no timeout
    local rest = 0
    assert.is_true(H.wait_until(function() rest = rest + p:poll(0); return t.n == 4 end, 10))
    p:close(0)
  end)

  it("keeps the reports after one whose callback raised", function()
    local t = tally()
    local p = with_reports_waiting(5, { on_delivery = function(err, r)
      t.cb(err, r)
      if r.key == "k2" then error("boom at k2") end
    end })
    local raised
    assert.is_true(H.wait_until(function()
      local ok, err = pcall(p.poll, p, 0.1, 2)
      if not ok then raised = err end
      return t.n == 5
    end, 10))
    assert.matches("boom at k2", raised, 1, true)
    for i = 1, 5 do assert.equal(1, t.by_key["k" .. i]) end
    p:close(0)
  end)

  it("serves nothing when called from a callback of the same producer", function()
    local nested = {}
    local p
    p = with_reports_waiting(3, { on_delivery = function()
      nested[#nested + 1] = p:poll(0, 1)
      nested.close = nested.close or select(2, pcall(p.close, p))
    end })
    assert.is_true(p:flush(10))
    assert.same({ 0, 0, 0 }, { nested[1], nested[2], nested[3] })
    assert.matches("close: " .. BUSY, nested.close, 1, true)
    p:close(0)
  end)

  it("refuses a max that is not an integer from 1", function()
    local p = H.producer(m)
    for _, bad in ipairs({ 0, -1, 1.5, "x" }) do
      assert.has_error(function() p:poll(0, bad) end,
        "bad argument #2 to 'poll' (max must be an integer from 1 to 2147483647)")
    end
    p:close(0)
  end)

  it("in the memory backend serves at most max_reports", function()
    local t = tally()
    local p = producers.memory.new({ on_delivery = t.cb })
    p.serve = function() return 0 end
    for i = 1, 3 do p:produce("t", "k" .. i, "v") end
    p.serve = nil
    assert.equal(2, p:poll(0, 2))
    assert.equal(1, p:poll(0, 2))
  end)
end)
