-- reports() with a spool (issue #22): a caller that takes its reports
-- only through reports() (producers.ngx does) gets what timed out in an
-- outage sent again, as poll's callers do (I5); before, only poll, flush
-- and produce fed the spool again, and records that timed out waited for
-- the next produce (the nginx spool spec lost an outage's messages).
local producers = require("producers")
local H = require("helpers")
local S = require("support.spool")

describe("reports() on a spooled producer", function()
  local m, dir
  setup(function() m = producers.mock_cluster(1) end)
  teardown(function() m:close() end)
  before_each(function() dir = S.tmpdir() end)
  after_each(function()
    m:broker_up(-1)
    S.rm(dir)
  end)

  it("sends again what timed out in an outage, and returns each delivery once the broker is back", function()
    local topic, N = H.topic("reports"), 10
    m:create_topic(topic, 1, 1)
    local p = S.producer(m, dir, { serve_on_produce = false, config = { ["message.timeout.ms"] = 300 } })
    m:broker_down(-1)
    for i = 1, N do assert.is_true(p:produce(topic, nil, "v" .. i)) end
    local failures = 0
    local function take()
      for _, r in ipairs(p:reports()) do
        if r.err then failures = failures + 1 end
      end
    end
    assert.is_true(H.wait_until(function() return p:metrics().spool.resent >= 2 * N end, 20, take),
      "resent: " .. p:metrics().spool.resent)
    m:broker_up(-1)
    assert.is_true(H.wait_until(function() return p:metrics().spool.records == 0 end, 20, take),
      "records: " .. p:metrics().spool.records)
    assert.equal(0, failures)
    assert.equal(0, p:queue_length())
    p:close()
    local _, count = S.values(m:bootstraps(), topic)
    for i = 1, N do assert.equal(1, count["v" .. i], "v" .. i) end
  end)
end)
