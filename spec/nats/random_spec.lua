-- Randomized API sequences on the NATS backend (issue #23: the randomized
-- API test of the Kafka backend, spec/core/random_spec.lua, run against
-- NATS too, in a smaller form): a seeded, time-bounded run of random
-- calls on a producer over a real nats-server (servers of its own,
-- N.own(4)): subjects a stream captures, a full stream's, none; ids that
-- repeat; headers; callbacks that re-enter produce, poll, reports, flush
-- and close; purge; the server going down and up. Then the producer is
-- closed and the invariants checked: each accepted message got exactly
-- one report, each refused one none, every failure a named one; registry
-- refs are back where they were.
--
-- Replay: PRODUCERS_SEED=<seed> (printed first); PRODUCERS_RANDOM_SECONDS
-- sets the driving time (default 6). When acks arrive depends on timing.
local N = require("support.nats")
local H = require("helpers")
local producers = require("producers")

if not producers.nats.available then
  describe("producers.nats #nats_unit", function() pending("built without NATS (no libnats)") end)
  return
end

local SEED = tonumber(os.getenv("PRODUCERS_SEED") or "") or (os.time() % 1000003)
local SECONDS = tonumber(os.getenv("PRODUCERS_RANDOM_SECONDS") or "") or 6
print(("spec/nats/random: seed %d (replay with PRODUCERS_SEED=%d)"):format(SEED, SEED))

local BUSY = "not allowed from a delivery callback, logger or encoder of the same producer"
local NAMED = { NO_STREAM = true, STREAM_FULL = true, _MSG_TIMED_OUT = true, _PURGE_INFLIGHT = true,
                _CONNECTION_CLOSED = true }
local REFUSED = { _QUEUE_FULL = true, _INVALID_ARG = true }

describe("producers.nats under random calls #nats_unit", function()
  local env

  lazy_setup(function()
    N.own(4)
    env = N.start()
  end)

  lazy_teardown(function()
    N.stop()
  end)

  it("gives every accepted message exactly one report, whatever the order of calls", N.with_logs(function()
    math.randomseed(SEED)
    local ok_stream, full_stream = N.stream("RAND"), N.stream("RANDFULL")
    N.create_stream(ok_stream, { "rand.ok.>" }, { duplicate_window = 60 })
    N.create_stream(full_stream, { "rand.full.>" }, { max_msgs = 5, discard = "new" })
    local function refs()
      collectgarbage(); collectgarbage()
      return H.registry_refs(function(v) return type(v) ~= "number" end)
    end
    local refs_before = refs()

    local accepted, reports, unknown, bad = {}, {}, {}, {}
    local serial, p, down = 0, nil, false
    local function record(err, r, where)
      local key = r and r.key
      if not key or not accepted[key] then unknown[#unknown + 1] = tostring(key) .. " " .. where; return end
      reports[key] = (reports[key] or 0) + 1
      if err and not NAMED[r.err_name] then bad[#bad + 1] = key .. ": " .. tostring(r.err_name) end
      if not err and not (r.stream and r.sequence == r.offset) then bad[#bad + 1] = key .. ": no stream" end
    end

    local produce_one
    local function reenter()
      local pick = math.random(8)
      if pick == 1 then produce_one(false)
      elseif pick == 2 then assert.are.equal(0, p:poll(0))                -- nested: serves nothing
      elseif pick == 3 then assert.are.same({}, p:reports())
      elseif pick == 4 or pick == 5 then
        local method = pick == 4 and "flush" or "close"
        local ok, err = pcall(p[method], p, 0)
        assert.is_false(ok)
        assert.matches(method .. ": " .. BUSY, err, 1, true)
      end
    end

    local function on_delivery(err, r)
      record(err, r, "on_delivery")
      if math.random(3) == 1 then reenter() end
    end

    function produce_one(top)
      serial = serial + 1
      local key = "u" .. serial
      local kind = math.random(10)
      local subject = kind <= 6 and "rand.ok." .. math.random(3) or kind <= 8 and "rand.full.x" or "nobody.rand"
      local value = ({ { n = serial, s = "v" }, "bytes-" .. serial, nil, ("x"):rep(1500) })[math.random(4)]
      local opts
      if math.random(2) == 1 then
        opts = {}
        if math.random(2) == 1 then opts.id = "id-" .. math.random(20) end
        if math.random(3) == 1 then opts.headers = { h = "v" .. serial } end
        if math.random(3) == 1 then opts.on_delivery = function(err, r) record(err, r, "own") end end
        if math.random(15) == 1 then opts.headers = { ["bad:name"] = "v" } end   -- refused
      end
      accepted[key] = true                 -- before: a report may come inside produce
      local ok, _, name = p:produce(subject, key, value, opts)
      if not ok then
        accepted[key] = nil
        if not REFUSED[name] then bad[#bad + 1] = key .. ": refused " .. tostring(name) end
      end
      return top
    end

    p = assert(producers.nats.new({ servers = env.NATS_URL, on_delivery = on_delivery, logger = function() end,
      reconnect_wait = 0.05, ack_timeout = 2, serve_on_produce = math.random(2) == 1 }))
    local deadline = require("system").monotime() + SECONDS
    while require("system").monotime() < deadline do
      local pick = math.random(100)
      if pick <= 60 then produce_one(true)
      elseif pick <= 72 then p:poll(math.random(0, 2) / 100)
      elseif pick <= 82 then for _, r in ipairs(p:reports(math.random(50))) do record(r.err, r, "reports") end
      elseif pick <= 90 then p:flush(math.random(1, 20) / 100)
      elseif pick <= 94 then assert.is_true(p:purge())
      elseif pick <= 96 then
        if down then N.up("plain") else N.down("plain") end
        down = not down
      end
    end
    if down then N.up("plain") end
    local ok, msg = p:flush(30)
    assert.is_true(ok, msg)
    p:close()

    local n = 0
    for key in pairs(accepted) do
      n = n + 1
      assert.are.equal(1, reports[key], ("%s: reports (seed %d)"):format(key, SEED))
    end
    assert.are.same({}, unknown, "reports for no accepted message (seed " .. SEED .. ")")
    assert.are.same({}, bad, "seed " .. SEED)
    assert.is_true(n > 50, "accepted " .. n)
    p = nil
    assert.are.equal(refs_before, refs(), "registry refs (seed " .. SEED .. ")")
  end))
end)
