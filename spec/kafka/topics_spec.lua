-- Topics librdkafka refuses (issue #26, found by the mutation check): a
-- name over its length limit makes no topic handle, and produce must say
-- so as an operational failure (nil, message, name, err) with nothing
-- queued, not hand librdkafka a missing handle. The producer goes on.
local producers = require("producers")
local H = require("helpers")

describe("produce to a topic librdkafka refuses", function()
  local m, p
  setup(function()
    m = producers.mock_cluster(1)
    p = H.producer(m, { logger = function() end })
  end)
  teardown(function()
    p:close()
    m:close()
  end)

  it("returns nil, message, name, err for a name over the length limit, queues nothing, and goes on", function()
    local long = string.rep("t", 600)
    local ok, msg, name, err = p:produce(long, "k", "v")
    assert.is_nil(ok)
    assert.equal("Local: Invalid argument or configuration", msg)
    assert.equal("_INVALID_ARG", name)
    assert.equal("_INVALID_ARG", err.name)
    assert.equal(msg, err.message)
    assert.equal(0, p:queue_length())
    -- once more (no handle was kept for it), then a good topic still works
    local ok2, msg2, name2 = p:produce(long, "k", "v")
    assert.same({ nil, msg, name }, { ok2, msg2, name2 })
    local report
    assert.is_true(p:produce(H.topic("after"), "k", "v", { on_delivery = function(e, r) report = { e, r.value } end }))
    assert.is_true(p:flush(10))
    assert.same({ nil, "v" }, report)
  end)
end)
