-- What event loops (OpenResty first) need from the core: reports as
-- values, produce that serves nothing, options checked without a
-- producer, a fork guard, and logs that say each thing once.
local producers = require("producers")
local H = require("helpers")

describe("reports", function()
  local m
  setup(function() m = producers.mock_cluster(1) end)
  teardown(function() m:close() end)

  it("returns reports as values and calls no callback", function()
    local called = 0
    local function count() called = called + 1 end
    local p = H.producer(m, { on_delivery = count, serve_on_produce = false })
    local topic = H.topic("values")
    assert.is_true(p:produce(topic, "k1", "v1", { on_delivery = count }))
    assert.is_true(p:produce(topic, "k2", "v2"))
    local got = {}
    assert.is_true(H.wait_until(function()
      for _, r in ipairs(p:reports()) do got[#got + 1] = r end
      return #got == 2
    end, 10))
    assert.equal(0, called)
    table.sort(got, function(a, b) return a.key < b.key end)
    assert.equal(count, got[1].on_delivery)
    assert.is_nil(got[2].on_delivery)
    for i, r in ipairs(got) do
      assert.equal(topic, r.topic)
      assert.equal("v" .. i, r.value)
      assert.is_nil(r.err)
      assert.is_number(r.offset)
    end
    assert.same({ delivered = 2, failed = 0, queued = 0 }, p:stats())
    p:close()
  end)

  it("returns at most max, the rest on the next call; failures carry err and error", function()
    local p = producers.kafka.new{ bootstrap_servers = "127.0.0.1:1", logger = function() end,
      config = { ["message.timeout.ms"] = 50 } }
    for i = 1, 5 do assert.is_true(p:produce("t", "k" .. i, "v")) end
    local first
    assert.is_true(H.wait_until(function()
      first = p:reports(2)
      return #first > 0
    end, 10))
    assert.equal(2, #first)
    assert.equal("_MSG_TIMED_OUT", first[1].error)
    assert.equal("Local: Message timed out", first[1].err:match("^[^(]+"):gsub(" $", ""))
    local rest = {}
    assert.is_true(H.wait_until(function()
      for _, r in ipairs(p:reports()) do rest[#rest + 1] = r end
      return #rest == 3
    end, 10))
    assert.equal(0, p:queue_length())
    p:close()
  end)

  it("with delivery.report.only.error returns failures only", function()
    local p = H.producer(m, { config = { ["delivery.report.only.error"] = true }, serve_on_produce = false })
    for i = 1, 20 do assert.is_true(p:produce(H.topic("oe"), "k", "v")) end
    assert.is_true(H.wait_until(function()
      assert.same({}, p:reports())
      return p:queue_length() == 0
    end, 10))
    assert.equal(20, p:stats().delivered)
    p:close()
  end)

  it("returns the logger's error beside the reports it took", function()
    local p = producers.kafka.new{ bootstrap_servers = "127.0.0.1:1",
      logger = function() error("logger boom") end, serve_on_produce = false,
      config = { ["message.timeout.ms"] = 50 } }
    assert.is_true(p:produce("t", "k", "v"))
    local err
    assert.is_true(H.wait_until(function()
      local _, e = p:reports()
      err = err or e
      return err ~= nil
    end, 10))
    assert.matches("logger boom", err)
    assert.has_error(function() p:close(0) end)     -- closed, raising the logger's error
    assert.is_true(p:is_closed())
  end)

  it("returns {} inside a callback of the same producer", function()
    local p, inner
    p = H.producer(m, { on_delivery = function() inner = p:reports() end })
    assert.is_true(p:produce(H.topic("in"), "k", "v"))
    assert.is_true(p:flush(10))
    assert.same({}, inner)
    p:close()
  end)

  it("refuses a max out of range, naming the range; accepts both ends", function()
    local p = H.producer(m)
    local MSG = "bad argument #1 to 'reports' (max must be an integer from 1 to 2147483647)"
    for _, bad in ipairs({ 0, -1, 1.5, 2147483648, 2 ^ 53, "10", true }) do
      assert.has_error(function() p:reports(bad) end, MSG)
    end
    assert.same({}, p:reports(1))
    assert.same({}, p:reports(2147483647))
    p:close()
  end)

  it("takes at most 1000 reports by default", function()
    -- purge hands librdkafka's reports over before it returns: all 1500
    -- wait at once, none served (serve_on_produce = false)
    local p = producers.kafka.new{ bootstrap_servers = "127.0.0.1:1", logger = function() end,
                                   serve_on_produce = false }
    for i = 1, 1500 do assert.is_true(p:produce("t", "k" .. i, "v")) end
    assert.is_true(p:purge())
    local first = p:reports()
    assert.equal(1000, #first)
    assert.equal("_PURGE_QUEUE", first[1].error)
    assert.equal(500, #p:reports())
    assert.same({}, p:reports())
    assert.equal(0, p:queue_length())
    p:close(0)
  end)
end)

describe("serve_on_produce = false", function()
  it("leaves every report to poll, flush and close", function()
    local m = producers.mock_cluster(1)
    local called = 0
    local p = H.producer(m, { serve_on_produce = false, on_delivery = function() called = called + 1 end })
    local topic = H.topic("nosrv")
    assert.is_true(p:produce(topic, "k", "v"))
    assert.is_true(p:flush(10))
    assert.equal(1, called)
    -- produce for a second or two: the first reports are ready within
    -- milliseconds, and a produce that served would call the callback
    local produced = 0
    H.wait_until(function()
      assert.is_true(p:produce(topic, "k", "v"))
      produced = produced + 1
      return produced == 1000
    end, 1, function() H.sh("sleep 0.001") end)
    assert.equal(1, called)
    assert.is_true(p:flush(10))
    assert.equal(1 + produced, called)
    p:close()
    m:close()
  end)
end)

describe("producers.kafka.check", function()
  it("accepts what new accepts, without making a producer", function()
    assert.is_true(producers.kafka.check{ bootstrap_servers = "127.0.0.1:1", config = { ["linger.ms"] = 5 } })
  end)

  it("names the bad option or property", function()
    local cases = {
      { { bootstrap_servers = "x:1", config = { ["linger.mss"] = 1 } }, "config: unknown property 'linger.mss'" },
      { { bootstrap_servers = "x:1", config = { ["acks"] = "most" } }, "config: invalid value for 'acks'" },
      { { bootstrap_servers = "x:1", bogus = 1 }, "unknown option 'bogus'" },
      { { config = {} }, "bootstrap_servers is required" },
      { { bootstrap_servers = "x:1", log_level = "loud" }, "log_level" },
      { { bootstrap_servers = "x:1", gc_flush_timeout = -1 }, "gc_flush_timeout" },
      { { bootstrap_servers = "x:1", username = "u" }, "username and password" },
    }
    for _, c in ipairs(cases) do
      local ok, err = producers.kafka.check(c[1])
      assert.is_nil(ok)
      assert.matches(c[2], err, 1, true)
      assert.is_nil(err:find("^[^:]*%.lua:%d+:"), "no position in " .. err)
    end
  end)

  it("never quotes a secret value", function()
    local ok, err = producers.kafka.check{ bootstrap_servers = "x:1",
      config = { ["ssl.key.password"] = { "not a string: hunter2" } } }
    assert.is_nil(ok)
    assert.is_nil(err:find("hunter2", 1, true))
  end)
end)

describe("logs", function()
  it("log each broker failure once, as an error", function()
    local log = H.recorder()
    local p = producers.kafka.new{ bootstrap_servers = "127.0.0.1:1", logger = log.fn,
      config = { ["message.timeout.ms"] = 2000 } }
    assert.is_true(p:produce("t", "k", "v"))
    assert.is_true(H.wait_until(function() return log.find("Connection refused", "error") end, 10,
      function() p:poll(0.1) end))
    p:poll(0.2)
    assert.is_nil(log.find("librdkafka FAIL"), log.text())
    p:close(0)
  end)

  it("close logs one summary line for purged messages, not one per message", function()
    local log = H.recorder()
    local p = producers.kafka.new{ bootstrap_servers = "127.0.0.1:1", logger = log.fn }
    for i = 1, 30 do assert.is_true(p:produce("t", "k" .. i, "v")) end
    p:close(0)
    local failed, summary = 0, 0
    for _, l in ipairs(log.lines) do
      if l[2]:find("delivery failed") then failed = failed + 1 end
      if l[2]:find("closed with 30 message%(s%) not delivered") then summary = summary + 1 end
    end
    assert.equal(0, failed)
    assert.equal(1, summary)
  end)
end)

describe("a host without the debug library", function()
  it("makes producers whose callbacks take reports (LuaJIT and 5.1 ask debug.getinfo)", function()
    local out, ok = H.run_lua([[
      debug = nil
      package.loaded.debug = nil
      local producers = require("producers")
      local m = producers.mock_cluster(1)
      local got
      local p = producers.kafka.new{ bootstrap_servers = m:bootstraps(),
        on_delivery = function(err, r) got = r and r.key end }
      assert(tostring(p):find("^producers.kafka"), tostring(p))
      assert(p:produce("nodebug", "k1", "v", { on_delivery = function(err, r) got = r.key end }))
      assert(p:flush(10))
      p:close()
      m:close()
      print("report for " .. tostring(got))
    ]])
    assert.is_true(ok, out)
    assert.matches("report for k1", out)
  end)
end)

local describe_jit = jit and describe or pending
describe_jit("a forked child (LuaJIT's ffi)", function()
  it("refuses the parent's producer and collects it without waiting", function()
    local out = H.run_lua([[
      local ffi = require("ffi")
      ffi.cdef("int fork(void); int waitpid(int, int *, int); void _exit(int);")
      local producers = require("producers")
      local p = producers.kafka.new{ bootstrap_servers = "127.0.0.1:1", logger = function() end }
      local pid = ffi.C.fork()
      if pid == 0 then
        local ok, err = pcall(p.produce, p, "t", "k", "v")
        local ok2, err2 = pcall(p.close, p, 0)
        p = nil
        collectgarbage()
        io.write("child: ", tostring(ok), " ", err, " | ", tostring(ok2), " ", err2, "\n")
        io.flush()
        ffi.C._exit(0)
      end
      local status = ffi.new("int[1]")
      ffi.C.waitpid(pid, status, 0)
      print("parent: " .. tostring(p:produce("t", "k", "v")))
      p:close(0)
    ]])
    assert.matches("child: false [^\n]*producer was created in another process %(before fork%)", out)
    assert.matches("| false [^\n]*producer was created in another process", out)
    assert.matches("parent: true", out)
  end)
end)
