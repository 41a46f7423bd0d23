-- The memory backend's partitions (lua/producers/memory.lua's header:
-- "a stable partition for a key, or round robin without one"): keyless
-- messages take the partitions in turn, a key always lands on the same
-- one, and partition -1 is the partitioner's choice as on Kafka. Found
-- by the mutation check (issue #26): no spec sent a keyless message to
-- a backend with more than one partition.
local producers = require("producers")

local function partitions_of(p)
  local out = {}
  for i, m in ipairs(p.messages) do out[i] = m.partition end
  return out
end

describe("producers.memory partitions", function()
  it("takes the partitions in turn for messages without a key", function()
    local p = producers.memory.new({ partitions = 3 })
    for i = 1, 7 do assert.is_true(p:produce("t", nil, "v" .. i)) end
    assert.is_true(p:flush())
    assert.same({ 0, 1, 2, 0, 1, 2, 0 }, partitions_of(p))
  end)

  it("reports the partition each keyless message took", function()
    local got = {}
    local p = producers.memory.new({ partitions = 2, on_delivery = function(err, r) got[#got + 1] = { err, r.partition } end })
    for _ = 1, 3 do assert.is_true(p:produce("t", nil, "v", { partition = -1 })) end
    assert.is_true(p:flush())
    assert.same({ { nil, 0 }, { nil, 1 }, { nil, 0 } }, got)
  end)

  it("puts a key on the same partition every time, whatever came between", function()
    local p = producers.memory.new({ partitions = 5 })
    local keys = { "user-1", "user-2", "user-3", "user-4", "user-5", "user-6", "user-7", "user-8" }
    for _, k in ipairs(keys) do assert.is_true(p:produce("t", k, "a")) end
    assert.is_true(p:produce("t", nil, "between"))
    for _, k in ipairs(keys) do assert.is_true(p:produce("t", k, "b")) end
    assert.is_true(p:flush())
    local first, seen = {}, {}
    for _, m in ipairs(p.messages) do
      if m.key then
        assert.is_true(m.partition >= 0 and m.partition < 5, "partition " .. m.partition)
        first[m.key] = first[m.key] or m.partition
        assert.equal(first[m.key], m.partition, m.key)
        seen[m.partition] = true
      end
    end
    -- a hash, not a constant: eight keys on five partitions use more than one
    local used = 0
    for _ in pairs(seen) do used = used + 1 end
    assert.is_true(used > 1, "every key on one partition")
  end)

  it("puts everything on partition 0 when there is one, and refuses a partition it does not have", function()
    local p = producers.memory.new()
    assert.is_true(p:produce("t", nil, "a"))
    assert.is_true(p:produce("t", "k", "b"))
    assert.is_true(p:produce("t", nil, "c", { partition = 0 }))
    local ok, msg, name, err = p:produce("t", nil, "d", { partition = 1 })
    assert.same({ nil, "Local: Unknown partition", "_UNKNOWN_PARTITION", "_UNKNOWN_PARTITION" },
      { ok, msg, name, err.name })
    assert.is_true(p:flush())
    assert.same({ 0, 0, 0 }, partitions_of(p))
  end)
end)
