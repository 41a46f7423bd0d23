local producers = require("producers")
local H = require("helpers")

describe("produce", function()
  local m, p, reports
  setup(function() m = producers.mock_cluster(1) end)
  teardown(function() m:close() end)
  before_each(function()
    reports = {}
    p = H.producer(m, { on_delivery = function(err, r) reports[#reports + 1] = { err = err, r = r } end })
  end)
  after_each(function() p:close(5) end)

  local function flushed()
    assert.is_true(p:flush(10))
    return reports
  end

  it("sends a table as JSON", function()
    assert.is_true(p:produce("json", "k", { event = "user_signup", tags = { "a", "b" }, ok = true }))
    local r = flushed()[1].r
    local cjson = require("cjson")
    assert.same({ event = "user_signup", tags = { "a", "b" }, ok = true }, cjson.decode(r.value))
  end)

  it("sends a string as is, binary safe", function()
    local bytes = "\0\1\2\255 bytes\n\0"
    assert.is_true(p:produce("raw", "k", bytes))
    assert.equal(bytes, flushed()[1].r.value)
  end)

  it("ignores arguments after opts, as Lua functions do: a sixth is no callback", function()
    local called = false
    assert.is_true(p:produce("extra", "k", "v", nil, "not a callback", {}))
    assert.is_true(p:produce("extra", "k", { a = 1 }, nil, function() called = true end))
    local got = flushed()
    assert.equal(2, #got)                  -- each reported to the producer's on_delivery
    assert.is_nil(got[1].err)
    assert.equal('{"a":1}', got[2].r.value)
    assert.is_false(called)
  end)

  it("sends nil as a null value (tombstone)", function()
    assert.is_true(p:produce("tomb", "gone", nil))
    local r = flushed()[1].r
    assert.is_nil(r.value)
    assert.equal("gone", r.key)
  end)

  it("takes a nil key and a partition", function()
    m:create_topic("parts", 4, 1)
    assert.is_true(p:produce("parts", nil, "v", { partition = 2 }))
    local r = flushed()[1].r
    assert.is_nil(r.key)
    assert.equal(2, r.partition)
    assert.is_number(r.timestamp)
  end)

  it("passes headers, as a map or as ordered pairs", function()
    assert.is_true(p:produce("hdr", "k", "v", { headers = { trace = "abc" } }))
    assert.is_true(p:produce("hdr", "k", "v", { headers = { { "x", "1" }, { "x", "2" } } }))
    local got = flushed()
    assert.same({ trace = "abc" }, got[1].r.headers)
    assert.equal("2", got[2].r.headers.x)
  end)

  it("encodes with its own cjson: the user's cjson settings change nothing", function()
    local cjson = require("cjson")
    cjson.encode_number_precision(3)
    cjson.encode_invalid_numbers(true)
    local ok, err = pcall(function()
      assert.is_true(p:produce("own", nil, { x = 3.14159 }))
      assert.has_error(function() p:produce("own", nil, { x = 0 / 0 }) end,
        "value: cannot encode table as JSON: Cannot serialise number: must not be NaN or Inf")
    end)
    cjson.encode_number_precision(14)
    cjson.encode_invalid_numbers(false)
    assert(ok, err)
    assert.equal('{"x":3.14159}', flushed()[1].r.value)
  end)

  describe("refuses bad input with an error that names it", function()
    local cases = {
      { "topic: expected string, got number", 42, "k", "v" },
      { "topic: expected string, got nil", nil, "k", "v" },
      { "key: expected string or nil, got table", "t", {}, "v" },
      { "key: expected string or nil, got number", "t", 7, "v" },
      { "value: expected table, string or nil, got boolean", "t", "k", true },
      { "value: expected table, string or nil, got number", "t", "k", 12 },
      { "value: expected table, string or nil, got function", "t", "k", print },
      { "value: cannot encode table as JSON: Cannot serialise function: type not supported",
        "t", "k", { f = print } },
      { "value: cannot encode table as JSON: Cannot serialise number: must not be NaN or Inf",
        "t", "k", { n = 0 / 0 } },
      { "opts: expected table or nil, got string", "t", "k", "v", "fast" },
      { "opts.partition: expected an integer, got a fraction", "t", "k", "v", { partition = 1.5 } },
      { "opts.partition: expected an integer, got string", "t", "k", "v", { partition = "1" } },
      { "opts.timestamp: expected an integer, got boolean", "t", "k", "v", { timestamp = true } },
      { "opts.headers: expected a table, got string", "t", "k", "v", { headers = "a=b" } },
      { "opts.headers: names and values must be strings, got number", "t", "k", "v", { headers = { a = 1 } } },
      { "opts.on_delivery: expected a function or callable, got number", "t", "k", "v", { on_delivery = 1 } },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        assert.has_error(function() p:produce(c[2], c[3], c[4], c[5]) end, c[1])
      end)
    end

    it("a table with a cycle", function()
      local t = {}
      t.self = t
      assert.has_error(function() p:produce("t", "k", t) end,
        "value: cannot encode table as JSON: Cannot serialise, excessive nesting (1001)")
    end)

    it("and loses nothing queued before", function()
      assert.is_true(p:produce("keep", "a", "1"))
      assert.has_error(function() p:produce("keep", "b", { f = print }) end,
        "value: cannot encode table as JSON: Cannot serialise function: type not supported")
      assert.is_true(p:produce("keep", "c", "3"))
      local got = flushed()
      assert.equal(2, #got)
      assert.equal("1", got[1].r.value)
      assert.equal("3", got[2].r.value)
      assert.equal(0, p:queue_length())
    end)
  end)

  it("returns nil, a message and a code when the local queue is full; poll and retry works", function()
    p:close()
    p = H.producer(m, { config = { ["queue.buffering.max.messages"] = 3, ["linger.ms"] = 200 },
                        on_delivery = function(err, r) reports[#reports + 1] = { err = err, r = r } end })
    for i = 1, 3 do assert.is_true(p:produce("full", tostring(i), "v")) end
    local ok, msg, code = p:produce("full", "4", "v")
    assert.is_nil(ok)
    assert.equal("Local: Queue full", msg)
    assert.equal("_QUEUE_FULL", code)
    assert.is_true(H.wait_until(function() return p:produce("full", "4", "v") end, 10,
      function() p:poll(0.05) end))
    assert.equal(4, #flushed())
  end)

  it("keeps working across more topics than it caches handles for", function()
    for i = 1, 20 do assert.is_true(p:produce("many-" .. i, "k", tostring(i))) end
    for i = 1, 20 do assert.is_true(p:produce("many-" .. i, "k", tostring(i))) end
    local got = flushed()
    assert.equal(40, #got)
    local per_topic = {}
    for _, g in ipairs(got) do per_topic[g.r.topic] = (per_topic[g.r.topic] or 0) + 1 end
    for i = 1, 20 do assert.equal(2, per_topic["many-" .. i]) end
  end)

  it("returns the failure tuple for a partition the topic does not have", function()
    m:create_topic("two", 2, 1)
    assert.is_true(p:produce("two", "warm", "up"))
    flushed()
    local ok, msg, code = p:produce("two", "k", "v", { partition = 9 })
    assert.is_nil(ok)
    assert.equal("Local: Unknown partition", msg)
    assert.equal("_UNKNOWN_PARTITION", code)
  end)
end)
