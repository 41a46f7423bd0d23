local producers = require("producers")
local H = require("helpers")
local unpack = table.unpack or unpack

describe("producers.memory", function()
  it("keeps messages, encoded exactly as the Kafka backend encodes them", function()
    local p = producers.memory.new()
    assert.is_true(p:produce("t", "k", { event = "e", n = 1 }))
    assert.is_true(p:produce("t", nil, "raw"))
    assert.is_true(p:produce("t", "gone", nil))
    assert.is_true(p:flush())
    assert.equal(3, #p.messages)
    assert.equal(producers.kafka and require("producers.core").encode_value({ event = "e", n = 1 }),
      p.messages[1].value)
    assert.equal("raw", p.messages[2].value)
    assert.is_nil(p.messages[3].value)
    assert.same({ 0, 1, 2 }, { p.messages[1].offset, p.messages[2].offset, p.messages[3].offset })
  end)

  it("serves reports on the next call, like Kafka, once each", function()
    local cb = spy.new(function() end)
    local own = spy.new(function() end)
    local p = producers.memory.new({ on_delivery = cb })
    assert.is_true(p:produce("t", "a", "1"))
    assert.spy(cb).was.called(0)
    assert.is_true(p:produce("t", "b", "2", { on_delivery = own }))
    assert.spy(cb).was.called(1)
    assert.spy(own).was.called(0)
    assert.equal(1, p:poll())
    assert.spy(own).was.called(1)
    assert.spy(cb).was.called(1)
    assert.equal(0, p:poll())
  end)

  it("gives reports the same fields as Kafka", function()
    local got
    local p = producers.memory.new({ partitions = 3, on_delivery = function(err, r) got = { err, r } end })
    assert.is_true(p:produce("t", "user-7", "v", { headers = { h = "1" } }))
    p:flush()
    assert.is_nil(got[1])
    local r = got[2]
    assert.equal("t", r.topic)
    assert.equal("user-7", r.key)
    assert.equal("v", r.value)
    assert.equal(0, r.offset)
    assert.is_number(r.partition)
    assert.is_true(math.abs(r.timestamp - os.time() * 1000) < 2000, tostring(r.timestamp))  -- ms, now
    assert.same({ h = "1" }, r.headers)
  end)

  it("fails deliveries on demand, with Kafka's message and name", function()
    local got
    local p = producers.memory.new({ fail = function(m) return m.key == "bad" and "_MSG_TIMED_OUT" end,
                                     on_delivery = function(err, r) got = { err, r } end })
    assert.is_true(p:produce("t", "bad", "v"))
    p:flush()
    assert.equal("Local: Message timed out", got[1])
    assert.equal("_MSG_TIMED_OUT", got[2].error)
    assert.equal(0, #p.messages)
  end)

  it("logs failures through the default report", function()
    local log = H.recorder()
    local p = producers.memory.new({ logger = log.fn, fail = function() return "_MSG_TIMED_OUT" end })
    assert.is_true(p:produce("t", "k", "v"))
    p:flush()
    assert.truthy(log.find("^delivery failed: t %[0%]: Local: Message timed out %(_MSG_TIMED_OUT%)$", "error"))
  end)

  it("returns the queue-full tuple at its limit", function()
    local p = producers.memory.new({ queue_limit = 1 })
    assert.is_true(p:produce("t", "k", "v"))
    local ok, msg, code = p:produce("t", "k", "v")
    assert.is_nil(ok)
    assert.equal("Local: Queue full", msg)
    assert.equal("_QUEUE_FULL", code)
    -- that call served the waiting report: the retry finds room
    assert.is_true(p:produce("t", "k", "v"))
  end)

  it("refuses bad input with the Kafka backend's messages", function()
    local p = producers.memory.new()
    assert.has_error(function() p:produce(1, "k", "v") end, "topic: expected string, got number")
    assert.has_error(function() p:produce("t", {}, "v") end, "key: expected string or nil, got table")
    assert.has_error(function() p:produce("t", "k", true) end, "value: expected table, string or nil, got boolean")
    assert.has_error(function() p:produce("t", "k", { f = print }) end,
      "value: cannot encode table as JSON: Cannot serialise function: type not supported")
  end)

  -- Each bad call, with the message both backends must give. The Kafka
  -- backend is asked too, so a change on either side shows here.
  local BAD = {
    { { "t", "k", "v", { partition = "x" } }, "opts.partition: expected an integer, got string" },
    { { "t", "k", "v", { partition = 1.5 } }, "opts.partition: expected an integer, got a fraction" },
    { { "t", "k", "v", { partition = 0 / 0 } }, "opts.partition: expected an integer, got a fraction" },
    { { "t", "k", "v", { partition = 2 ^ 32 } }, "opts.partition: out of range (-1 to 2147483647), got 4294967296" },
    { { "t", "k", "v", { partition = -2 } }, "opts.partition: out of range (-1 to 2147483647), got -2" },
    { { "t", "k", "v", { timestamp = -1 } }, "opts.timestamp: out of range (0 to 9223372036854775807), got -1" },
    { { "t", "k", "v", { headers = { h = 1 } } }, "opts.headers: names and values must be strings, got number" },
    { { "t", "k", "v", { headers = { [7] = "v" } } }, "opts.headers: names and values must be strings, got number" },
    { { "t", "k", "v", { headers = { { "h", 2 } } } }, "opts.headers: names and values must be strings, got number" },
    { { "t", "k", "v", { headers = { ["a\0b"] = "v" } } }, "opts.headers: names must not contain a NUL byte" },
    { { "t", "k", "v", { headers = "h=1" } }, "opts.headers: expected a table, got string" },
    { { "t", "k", "v", { on_delivery = 1 } }, "opts.on_delivery: expected a function or callable, got number" },
    { { "a\0b", "k", "v" }, "topic: must not contain a NUL byte" },
    { { "t", "k", "v", 1 }, "opts: expected table or nil, got number" },
  }

  local function refusal(p, args)
    local ok, err = pcall(p.produce, p, unpack(args, 1, 4))
    assert.is_false(ok)
    return (tostring(err):gsub("^[^:]*:%d+: ", ""))
  end

  it("refuses bad options, header names and topic names with the Kafka backend's messages", function()
    local p = producers.memory.new({ partitions = 3 })
    local k = producers.kafka.new({ bootstrap_servers = "127.0.0.1:1", logger = function() end })
    for _, case in ipairs(BAD) do
      assert.equal(case[2], refusal(p, case[1]))
      assert.equal(case[2], refusal(k, case[1]), "the Kafka backend")
    end
    assert.equal(0, p:queue_length())
    assert.equal(0, k:queue_length())
    k:close(0)
  end)

  it("takes partition -1 as the partitioner's choice and refuses one it does not have", function()
    local p = producers.memory.new({ partitions = 2 })
    assert.is_true(p:produce("t", "k", "v", { partition = -1 }))
    assert.is_true(p:produce("t", "k", "v", { partition = 1, timestamp = 5 }))
    local refused = { p:produce("t", "k", "v", { partition = 2 }) }
    assert.same({ nil, "Local: Unknown partition", "_UNKNOWN_PARTITION" }, { refused[1], refused[2], refused[3] })
    assert.equal("_UNKNOWN_PARTITION", refused[4].name)
    p:flush()
    assert.equal(2, #p.messages)
    assert.equal(1, p.messages[2].partition)
    assert.equal(5, p.messages[2].timestamp)
  end)

  it("raises at produce when fail gives an unknown error name, queueing nothing", function()
    local names = { "_MSG_TIMED_OUT", "NOPE", "NO_ERROR", 42 }
    local n, reports = 0, {}
    local p = producers.memory.new({ fail = function() n = n + 1; return names[n] end,
                                     on_delivery = function(err, r) reports[#reports + 1] = { err, r.error } end })
    assert.is_true(p:produce("t", "a", "v"))
    assert.has_error(function() p:produce("t", "b", "v") end,
      "producers.memory: fail must return nil or an error name such as '_MSG_TIMED_OUT', got 'NOPE'")
    assert.has_error(function() p:produce("t", "c", "v") end,
      "producers.memory: fail must return nil or an error name such as '_MSG_TIMED_OUT', got 'NO_ERROR'")
    assert.has_error(function() p:produce("t", "d", "v") end,
      "producers.memory: fail must return nil or an error name such as '_MSG_TIMED_OUT', got number")
    assert.is_true(p:produce("t", "e", "v"))     -- names[5] is nil: delivered
    assert.is_true(p:flush())
    -- one report for each message produce accepted, none for the refused
    assert.same({ { "Local: Message timed out", "_MSG_TIMED_OUT" }, { nil, nil } }, reports)
  end)

  it("raises at produce when fail raises, queueing nothing", function()
    local reports = 0
    local p = producers.memory.new({ fail = function(m) if m.key == "x" then error("fail broke") end end,
                                     on_delivery = function() reports = reports + 1 end })
    assert.is_true(p:produce("t", "a", "v"))
    assert.has_error(function() p:produce("t", "x", "v") end, "fail broke")
    assert.equal(1, p:queue_length())
    p:close()
    assert.equal(1, reports)
  end)

  it("keeps the rest of its reports when a callback raises", function()
    local seen = {}
    local p = producers.memory.new({ on_delivery = function(_, r)
      seen[#seen + 1] = r.key
      if r.key == "2" then error("boom") end
    end })
    p:produce("t", "1", "v")
    p:produce("t", "2", "v")
    assert.has_error(function() p:produce("t", "3", "v") end, "boom")   -- "3" is queued all the same
    p:flush()
    assert.same({ "1", "2", "3" }, seen)
  end)

  it("closes once and then refuses work", function()
    local p = producers.memory.new()
    p:produce("t", "k", "v")
    p:close()
    p:close()
    assert.equal(1, #p.messages)
    assert.has_error(function() p:produce("t", "k", "v") end, "producer is closed")
  end)
end)
