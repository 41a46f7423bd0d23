-- metrics()' latency window and on_stats' warning at their edges (issue
-- #26, found by the mutation check): p99 is the rank ceil(0.99 n) of the
-- window's latencies, pinned on a known distribution (n = 1000, the
-- slowest 11 or 10 made slow by the mock broker's round-trip time); an
-- interval of 1 ms is statistics on, so on_stats gets no "never called"
-- warning.
local producers = require("producers")
local H = require("helpers")

local N, RTT_MS = 1000, 1000

describe("metrics' latency window", function()
  local m
  setup(function() m = producers.mock_cluster(1) end)
  teardown(function() m:close() end)

  it("puts p99 at the ceil(0.99 n)-th latency: slow with 11 slow of 1000, fast with 10", function()
    local topic = H.topic("p99")
    assert.is_true(m:create_topic(topic, 1, 1))
    -- the window is the statistics interval: every report below lands in
    -- the first one, which the last metrics() call finds closed
    local window = { ["statistics.interval.ms"] = 6000, ["linger.ms"] = 0 }
    local eleven = H.producer(m, { config = window, logger = function() end })
    local ten = H.producer(m, { config = window, logger = function() end })
    for i = 1, N - 11 do assert.is_true(eleven:produce(topic, nil, "fast" .. i)) end
    for i = 1, N - 10 do assert.is_true(ten:produce(topic, nil, "fast" .. i)) end
    assert.is_true(eleven:flush(10))
    assert.is_true(ten:flush(10))
    m:broker_set_rtt(1, RTT_MS)
    for i = 1, 11 do assert.is_true(eleven:produce(topic, nil, "slow" .. i)) end
    for i = 1, 10 do assert.is_true(ten:produce(topic, nil, "slow" .. i)) end
    assert.is_true(eleven:flush(20))
    assert.is_true(ten:flush(20))
    m:broker_set_rtt(1, 0)
    local l11, l10
    assert.is_true(H.wait_until(function()
      l11, l10 = eleven:metrics().latency, ten:metrics().latency
      return l11.count > 0 and l10.count > 0
    end, 15, function() require("system").sleep(0.05) end))
    eleven:close()
    ten:close()
    -- all in one window (else the run was too slow for it: not a finding)
    assert.equal(N, l11.count)
    assert.equal(N, l10.count)
    local slow, fast = RTT_MS / 1e3, RTT_MS / 2e3
    assert.is_true(l11.p99 >= slow, "11 slow of 1000: p99 " .. l11.p99 .. " s, not the slow ones'")
    assert.is_true(l10.p99 < fast, "10 slow of 1000: p99 " .. l10.p99 .. " s, not the fast ones'")
    assert.is_true(l11.avg < l11.p99)
  end)
end)

describe("on_stats with statistics.interval.ms = 1", function()
  it("is called, and new does not warn that it never is", function()
    local m = producers.mock_cluster(1)
    local log, calls = H.recorder(), 0
    local p = H.producer(m, { logger = log.fn, on_stats = function() calls = calls + 1 end,
                              config = { ["statistics.interval.ms"] = 1 } })
    assert.is_nil(log.find("never called"), log.text())
    assert.is_true(H.wait_until(function() return calls > 0 end, 10, function() p:poll(0.01) end))
    p:close()
    m:close()
    assert.is_nil(log.find("never called"), log.text())
  end)
end)
