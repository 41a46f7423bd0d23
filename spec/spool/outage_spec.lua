-- The spool through outages (issue #22, docs/spool.md), on the mock
-- cluster: a broker down longer than message.timeout.ms (I5, I6: no
-- failure report, every accepted message delivered once, counted as
-- resent), refusals during an outage, and hostile callers of a replay:
-- callbacks that re-enter produce, flush and close, a producer collected
-- in the middle of one.
local producers = require("producers")
local H = require("helpers")
local S = require("support.spool")
local unpack = table.unpack or unpack

local function values_of(m, topic)
  local list, count = S.values(m:bootstraps(), topic)
  return count, list
end

describe("a spooled producer through an outage", function()
  local m, dir
  setup(function() m = producers.mock_cluster(1) end)
  teardown(function() m:close() end)
  before_each(function() dir = S.tmpdir() end)
  after_each(function()
    m:broker_up(-1)
    S.rm(dir)
  end)

  local function producer(opts)
    return S.producer(m, dir, opts)
  end

  it("sends again what timed out, reports no failure, and delivers every message once when the broker is back (I5, I6)", function()
    local topic, N = H.topic("outage"), 20
    m:create_topic(topic, 1, 1)
    local calls, on_delivery = {}, 0
    local p = producer({ config = { ["message.timeout.ms"] = 300 },
      on_delivery = function() on_delivery = on_delivery + 1 end })
    m:broker_down(-1)
    for i = 1, N do
      assert.is_true(p:produce(topic, nil, "v" .. i, { on_delivery = function(err, r)
        calls[i] = (calls[i] or 0) + 1
        assert.is_nil(err)
        assert.equal("v" .. i, r.value)
      end }))
    end
    -- every message times out at least twice in librdkafka, unreported
    assert.is_true(H.wait_until(function() return p:metrics().spool.resent >= 2 * N end, 20,
      function() p:poll(0.05) end), "resent: " .. p:metrics().spool.resent)
    assert.same({}, calls)
    assert.equal(0, on_delivery)
    assert.equal(N, p:queue_length())
    assert.equal(N, p:metrics().spool.records)
    local ok, msg, name, err = p:flush(0.2)
    assert.is_nil(ok)
    assert.equal("timed out", msg)
    assert.equal("_TIMED_OUT", name)
    assert.equal(N, err.queued)
    m:broker_up(-1)
    assert.is_true(p:flush(20))
    for i = 1, N do assert.equal(1, calls[i], "message " .. i) end
    assert.equal(0, on_delivery)
    assert.equal(0, p:stats().failed)
    assert.equal(N, p:stats().delivered)
    assert.equal(0, p:metrics().spool.records)
    p:close()
    local count = values_of(m, topic)
    for i = 1, N do assert.equal(1, count["v" .. i], "v" .. i) end
  end)

  it("counts a re-send after requests that timed out as possibly persisted, and reports once, delivered", function()
    local topic = H.topic("request-timeout")
    m:create_topic(topic, 1, 1)
    local calls = {}
    local p = producer({ config = { ["message.timeout.ms"] = 300, ["retry.backoff.ms"] = 50 } })
    assert.is_true(p:produce(topic, nil, "warm"))
    assert.is_true(p:flush(10))
    local errors = {}
    for i = 1, 20 do errors[i] = "REQUEST_TIMED_OUT" end
    m:push_request_errors(0, unpack(errors))       -- Produce: the broker may have written it
    assert.is_true(p:produce(topic, nil, "once", { on_delivery = function(err) calls[#calls + 1] = err or "ok" end }))
    assert.is_true(H.wait_until(function() return p:metrics().spool.resent_possibly_persisted >= 1 end, 20,
      function() p:poll(0.05) end))
    assert.is_true(p:flush(30))
    assert.same({ "ok" }, calls)                    -- its timeouts never reached Lua
    local s = p:metrics().spool
    assert.is_true(s.resent >= s.resent_possibly_persisted)
    p:close()
    local _, count = S.values(m:bootstraps(), topic)
    assert.equal(1, count.once)
  end)

  it("keeps every record accepted before a refusal for full (I4 during an outage)", function()
    local topic = H.topic("outage-full")
    m:create_topic(topic, 1, 1)
    local p = producer({ spool = { dir = dir, max_bytes = 8192, segment_bytes = 4096 },
      config = { ["message.timeout.ms"] = 200 } })
    m:broker_down(-1)
    local accepted = 0
    while p:produce(topic, nil, ("z"):rep(100) .. (accepted + 1)) do accepted = accepted + 1 end
    local ok, _, name = p:produce(topic, nil, ("z"):rep(100) .. (accepted + 1))
    assert.is_nil(ok)
    assert.equal("SPOOL_FULL", name)
    assert.is_true(H.wait_until(function() return p:metrics().spool.resent >= accepted end, 20,
      function() p:poll(0.05) end))
    m:broker_up(-1)
    assert.is_true(p:flush(20))
    assert.equal(accepted, p:stats().delivered)
    p:close()
    local count = values_of(m, topic)
    for i = 1, accepted do assert.equal(1, count[("z"):rep(100) .. i]) end
  end)

  -- Leaves n records (values "old<i>") in dir, every broker down.
  local function leave(topic, n)
    m:broker_down(-1)
    local p = producer({})
    for i = 1, n do assert.is_true(p:produce(topic, nil, "old" .. i, { partition = 0 })) end
    p:close(0)
    m:broker_up(-1)
  end

  it("serves a replay to callbacks that produce, and refuses their flush and close (busy)", function()
    local topic = H.topic("reenter")
    m:create_topic(topic, 1, 1)
    leave(topic, 5)
    local seen, errors, p = {}, {}, nil
    p = producer({ on_delivery = function(err, r)
      assert.is_nil(err)
      seen[#seen + 1] = r.value
      if r.replayed then
        assert.is_true(p:produce(topic, nil, "new-" .. r.value, { partition = 0 }))
        errors[#errors + 1] = select(2, pcall(p.flush, p, 0))
        errors[#errors + 1] = select(2, pcall(p.close, p, 0))
      end
    end })
    assert.is_true(p:flush(20))
    assert.equal(10, #seen)
    assert.equal(10, #errors)
    for _, e in ipairs(errors) do assert.matches("not allowed from a delivery callback", e) end
    p:close()
    local count, list = values_of(m, topic)
    assert.equal(10, #list)
    for i = 1, 5 do
      assert.equal("old" .. i, list[i])            -- the replay first, in order (I10)
      assert.equal(1, count["new-old" .. i])
    end
  end)

  it("survives being collected in the middle of a replay; the next producer delivers the rest", function()
    local topic, N = H.topic("gc"), 200
    m:create_topic(topic, 1, 1)
    leave(topic, N)
    local p = producer({ gc_flush_timeout = 0 })
    assert.equal(N, p:queue_length())
    p = nil
    collectgarbage()
    collectgarbage()
    local p2 = producer({})                        -- the lock is free again
    assert.is_true(p2:flush(20))
    assert.equal(0, p2:metrics().spool.records)
    p2:close()
    local count = values_of(m, topic)
    for i = 1, N do assert.is_true((count["old" .. i] or 0) >= 1, "old" .. i) end
  end)
end)
