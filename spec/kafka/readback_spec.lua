-- What reaches the broker, read back with kcat: an independent client.
local producers = require("producers")
local H = require("helpers")

describe("messages read back with kcat", function()
  local m, p, reports
  setup(function()
    m = producers.mock_cluster(1)
    reports = {}
    p = H.producer(m, { on_delivery = function(err, r)
      assert(err == nil, err)
      reports[#reports + 1] = r
    end })
  end)
  teardown(function()
    p:close()
    m:close()
  end)

  it("match what was produced byte for byte: keys, values, headers, tombstones, offsets", function()
    local topic = H.topic("readback")
    m:create_topic(topic, 1, 1)
    local binary = "\0\1\2 \255\254|x|\n|y"
    local sent = {
      { "user-1", { event = "user_signup", user_id = 12345, ok = true }, '{"event":"user_signup","user_id":12345,"ok":true}' },
      { "bin\0key", binary, binary },
      { "gone", nil, nil },
      { nil, "no key", "no key" },
      { "", "", "" },
    }
    for i, s in ipairs(sent) do
      assert.is_true(p:produce(topic, s[1], s[2], { headers = { { "seq", tostring(i) }, { "app", "spec" } } }))
    end
    assert.is_true(p:flush(10))
    local got = H.kcat_read(m:bootstraps(), topic)
    assert.equal(#sent, #got)
    for i, s in ipairs(sent) do
      local r = got[i]
      assert.equal(s[1], r.key)
      if type(s[2]) == "table" then
        assert.same(require("cjson").decode(s[3]), require("cjson").decode(r.value))
      else
        assert.equal(s[3], r.value)
      end
      assert.same({ { "seq", tostring(i) }, { "app", "spec" } }, r.headers)
      assert.equal(reports[i].offset, r.offset)
      assert.equal(reports[i].value, r.value)
      assert.equal(reports[i].partition, r.partition)
    end
  end)

  it("arrive intact when large: strings lent to librdkafka outlive the script's last reference", function()
    local topic = H.topic("large")
    -- 1023 bytes are copied, from 1024 on the string is lent; each one is
    -- made here and dropped at once, and the collector runs before delivery
    local sizes = { 1023, 1024, 5000, 100000, 300000 }
    local function value(i, n)
      return (("%d:"):format(i) .. string.rep(string.char(i % 7, 255, 65 + i), n)):sub(1, n)
    end
    for i, n in ipairs(sizes) do
      assert.is_true(p:produce(topic, "k" .. i, value(i, n)))
    end
    local cj = producers.kafka.new{ bootstrap_servers = m:bootstraps(), json = "lua-cjson" }
    local list = {}
    for i = 1, 300 do list[i] = ("item-%05d"):format(i) end
    assert.is_true(cj:produce(topic, "cjson", { list = list }))   -- lua-cjson's string, lent
    list = nil
    for _ = 1, 3 do
      collectgarbage()
      local junk = {}
      for j = 1, 2000 do junk[j] = string.rep("x", 1000 + j) end   -- reuse the freed memory
    end
    assert.is_true(cj:flush(10))
    cj:close()
    assert.is_true(p:flush(10))
    local got = {}
    for _, r in ipairs(H.kcat_read(m:bootstraps(), topic)) do got[r.key] = r.value end
    local reported = {}
    for _, r in ipairs(reports) do if r.key then reported[r.key] = r.value end end
    for i, n in ipairs(sizes) do
      assert.equal(n, #got["k" .. i])
      assert.is_true(got["k" .. i] == value(i, n), "value " .. i .. " differs")
      assert.is_true(reported["k" .. i] == value(i, n), "report.value " .. i .. " differs")
    end
    local expected = {}
    for i = 1, 300 do expected[i] = ("item-%05d"):format(i) end
    assert.same({ list = expected }, require("cjson").decode(got.cjson))
  end)

  it("carry the timestamp given to produce", function()
    local topic = H.topic("ts")
    assert.is_true(p:produce(topic, "k", "v", { timestamp = 1700000000123 }))
    assert.is_true(p:flush(10))
    local got = H.kcat_read(m:bootstraps(), topic)
    assert.equal(1, #got)
    assert.equal(1700000000123, got[1].timestamp)
  end)

  it("keep the order of a key's messages within its partition", function()
    local topic = H.topic("order")
    m:create_topic(topic, 4, 1)
    for i = 1, 300 do
      assert.is_true(p:produce(topic, "key-" .. (i % 5), tostring(i)))
    end
    assert.is_true(p:flush(10))
    local got = H.kcat_read(m:bootstraps(), topic)
    assert.equal(300, #got)
    local last, part = {}, {}
    for _, r in ipairs(got) do
      local n = tonumber(r.value)
      if last[r.key] then assert.is_true(n > last[r.key]) end
      last[r.key] = n
      part[r.key] = part[r.key] or r.partition
      assert.equal(part[r.key], r.partition)
    end
  end)
end)
