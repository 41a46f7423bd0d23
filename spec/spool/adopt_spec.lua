-- p:spool_adopt(dir) (issue #22, I17; docs/spool.md): a producer
-- delivers the spool of another directory (in nginx, a worker that is
-- gone), oldest first and before its own messages, acks the records
-- there and removes the directory once empty; a spool whose owner lives
-- is refused.
local producers = require("producers")
local H = require("helpers")
local S = require("support.spool")

local function exists(path)
  local _, ok = H.sh("test -e " .. H.shell_quote(path))
  return ok
end

describe("p:spool_adopt(dir)", function()
  local m, a, b
  setup(function() m = producers.mock_cluster(1) end)
  teardown(function() m:close() end)
  before_each(function() a, b = S.tmpdir(), S.tmpdir() end)
  after_each(function()
    m:broker_up(-1)
    S.rm(a, b)
  end)

  local function producer(dir, opts)
    return S.producer(m, dir, opts)
  end

  it("delivers the other spool's records first, in order, reported replayed, and removes its directory", function()
    local topic, N = H.topic("adopt"), 30
    m:create_topic(topic, 1, 1)
    m:broker_down(-1)
    local gone = producer(a)
    for i = 1, N do assert.is_true(gone:produce(topic, nil, "old" .. i, { partition = 0 })) end
    gone:close(0)
    m:broker_up(-1)
    local replayed, log = 0, H.recorder()
    -- librdkafka takes 5 messages at a time: the rest wait in the spools
    local p = producer(b, { logger = log.fn, config = { ["queue.buffering.max.messages"] = 5 },
      on_delivery = function(err, r)
      assert.is_nil(err)
      if r.replayed then replayed = replayed + 1 end
    end })
    assert.is_true(p:spool_adopt(a))
    assert.is_not_nil(log.find(("^spool %s resumed: %d records"):format(a:gsub("%p", "%%%0"), N), "info"), log.text())
    for i = 1, 3 do assert.is_true(p:produce(topic, nil, "new" .. i, { partition = 0 })) end
    assert.equal(N + 3, p:queue_length())
    assert.is_true(p:flush(20))
    assert.equal(N, replayed)
    assert.is_true(H.wait_until(function()
      p:poll(0)
      return p:metrics().spool.adopted == 1
    end, 10), "the adopted spool was not removed")
    assert.equal(0, p:metrics().spool.adopting)
    assert.is_false(exists(a))
    p:close()
    local values = S.values(m:bootstraps(), topic)
    local want = {}
    for i = 1, N do want[i] = "old" .. i end
    for i = 1, 3 do want[N + i] = "new" .. i end
    assert.same(want, values)
  end)

  it("refuses a spool whose owner lives, and its own, with SPOOL_LOCKED; raises without a spool", function()
    local owner = producer(a)
    local p = producer(b)
    local ok, msg, name, err = p:spool_adopt(a)
    assert.is_nil(ok)
    assert.equal("SPOOL_LOCKED", name)
    assert.equal("SPOOL_LOCKED", err.name)
    assert.matches("^spool " .. a:gsub("%p", "%%%0") .. " is in use by pid %d+$", msg)
    ok, msg, name = p:spool_adopt(b)
    assert.is_nil(ok)
    assert.equal("SPOOL_LOCKED", name)
    owner:close()
    p:close()
    local plain = H.producer(m, {})
    assert.has_error(function() plain:spool_adopt(a) end,
      "spool_adopt: the producer has no spool (option spool)")
    assert.has_error(function() p:spool_adopt(a) end, "producer is closed")
    plain:close()
  end)
end)
