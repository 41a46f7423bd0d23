local producers = require("producers")
local H = require("helpers")

describe("delivery reports", function()
  local m
  setup(function() m = producers.mock_cluster(3) end)
  teardown(function() m:close() end)

  it("carry topic, partition, offset, key, value, timestamp and latency", function()
    local got = {}
    local p = H.producer(m, { on_delivery = function(err, r) got[#got + 1] = { err, r } end })
    m:create_topic("fields", 1, 1)
    assert.is_true(p:produce("fields", "k1", { n = 1 }, { headers = { h = "v" } }))
    assert.is_true(p:produce("fields", "k2", "two"))
    assert.is_true(p:flush(10))
    assert.equal(2, #got)
    local err, r = got[1][1], got[1][2]
    assert.is_nil(err)
    assert.equal("fields", r.topic)
    assert.equal(0, r.partition)
    assert.equal(0, r.offset)
    assert.equal("k1", r.key)
    assert.equal('{"n":1}', r.value)
    assert.same({ h = "v" }, r.headers)
    assert.same({ { "h", "v" } }, r.header_list)
    assert.is_number(r.timestamp)
    assert.is_true(r.latency >= 0 and r.latency < 10)
    assert.is_nil(r.error)
    assert.equal(1, got[2][2].offset)
    p:close()
  end)

  it("are served by produce itself, with no poll or flush", function()
    local first = spy.new(function() end)
    local p = H.producer(m)
    assert.is_true(p:produce("flow", "first", "v", { on_delivery = first }))
    local produced = 1
    assert.is_true(H.wait_until(function() return #first.calls == 1 end, 10, function()
      os.execute("sleep 0.02")
      assert.is_true(p:produce("flow", "more", "v"))
      produced = produced + 1
    end))
    assert.is_true(produced < 500)
    p:close()
    assert.spy(first).was.called(1)
  end)

  it("keep repeated header names, in order, in header_list", function()
    local got
    local p = H.producer(m, { on_delivery = function(_, r) got = r end })
    assert.is_true(p:produce("hdrs", "k", "v", { headers = { { "seq", "1" }, { "seq", "again" }, { "x", "" } } }))
    assert.is_true(p:flush(10))
    assert.same({ { "seq", "1" }, { "seq", "again" }, { "x", "" } }, got.header_list)
    assert.same({ seq = "again", x = "" }, got.headers)
    p:close()
  end)

  it("are counted by stats, with or without a callback", function()
    -- produce serves no reports here: on a loaded machine the first ones
    -- could come back while the loop still produces
    local p = H.producer(m, { serve_on_produce = false, config = { ["message.timeout.ms"] = 5000 } })
    for i = 1, 30 do assert.is_true(p:produce("stats", "k", tostring(i))) end
    assert.same({ delivered = 0, failed = 0, queued = 30 }, p:stats())
    assert.is_true(p:flush(10))
    assert.same({ delivered = 30, failed = 0, queued = 0 }, p:stats())
    p:close()
    local lost = producers.kafka.new({ bootstrap_servers = "127.0.0.1:1", logger = function() end,
                                       config = { ["message.timeout.ms"] = 300 } })
    assert.is_true(lost:produce("stats", "k", "v"))
    assert.is_true(lost:flush(10))
    assert.same({ delivered = 0, failed = 1, queued = 0 }, lost:stats())
    lost:close()
  end)

  it("name a failure's error as err_name, and as error (its older name); a success has neither", function()
    local got = {}
    local p = producers.kafka.new({ bootstrap_servers = H.refused_address(), logger = function() end,
                                    config = { ["message.timeout.ms"] = 300 },
                                    on_delivery = function(_, r) got[#got + 1] = r end })
    assert.is_true(p:produce("names", "k", "v"))
    assert.is_true(p:flush(10))
    p:close()
    assert.equal("_MSG_TIMED_OUT", got[1].err_name)
    assert.equal("_MSG_TIMED_OUT", got[1].error)
    local ok = H.producer(m, { on_delivery = function(_, r) got[#got + 1] = r end })
    assert.is_true(ok:produce("names", "k", "v"))
    assert.is_true(ok:flush(10))
    ok:close()
    assert.is_nil(got[2].err_name)
    assert.is_nil(got[2].error)
  end)

  it("with delivery.report.only.error, come for failures only, and flush still ends", function()
    local cb = spy.new(function() end)
    local p = H.producer(m, { on_delivery = cb, config = { ["delivery.report.only.error"] = true } })
    for i = 1, 50 do assert.is_true(p:produce("only-errors", "k", tostring(i))) end
    assert.is_true(p:flush(10))
    assert.equal(0, p:queue_length())
    assert.spy(cb).was.called(0)
    p:close()
    local failed = {}
    local lost = producers.kafka.new({ bootstrap_servers = "127.0.0.1:1", logger = function() end,
      on_delivery = function(err, r) failed[#failed + 1] = r.error end,
      config = { ["delivery.report.only.error"] = true, ["message.timeout.ms"] = 300 } })
    assert.is_true(lost:produce("only-errors", "k", "v"))
    assert.is_true(lost:flush(10))
    assert.same({ "_MSG_TIMED_OUT" }, failed)
    lost:close()
  end)

  it("call the producer's callback exactly once per message", function()
    local cb = spy.new(function() end)
    local p = H.producer(m, { on_delivery = cb })
    for i = 1, 200 do assert.is_true(p:produce("once", "k" .. i % 7, { i = i })) end
    assert.is_true(p:flush(10))
    assert.spy(cb).was.called(200)
    p:poll(0.1)
    assert.spy(cb).was.called(200)
    p:close()
  end)

  it("prefer a message's own callback, called once, and accept callable tables", function()
    local producer_cb = spy.new(function() end)
    local own = spy.new(function() end)
    local callable = setmetatable({ n = 0 }, { __call = function(self) self.n = self.n + 1 end })
    local p = H.producer(m, { on_delivery = producer_cb })
    assert.is_true(p:produce("own", "a", "1", { on_delivery = own }))
    assert.is_true(p:produce("own", "b", "2", { on_delivery = callable }))
    assert.is_true(p:produce("own", "c", "3"))
    assert.is_true(p:flush(10))
    assert.spy(own).was.called(1)
    assert.equal(1, callable.n)
    assert.spy(producer_cb).was.called(1)
    p:close()
  end)

  it("give every callback that can take it the report: vararg, callable, per message", function()
    local nargs, seen = {}, {}
    local callable = setmetatable({}, { __call = function(_, err, r) seen.callable = { err, r } end })
    local p = H.producer(m, { on_delivery = function(...)
      nargs[#nargs + 1] = select("#", ...)
      seen.vararg = select(2, ...)
    end })
    assert.is_true(p:produce("args", "a", "1"))
    assert.is_true(p:produce("args", "b", "2", { on_delivery = callable }))
    assert.is_true(p:produce("args", "c", "3", { on_delivery = function(err, r) seen.own = { err, r } end }))
    assert.is_true(p:produce("args", "d", "4", { on_delivery = function(err) seen.err_only = { err } end }))
    assert.is_true(p:flush(10))
    assert.same({ 2 }, nargs)
    assert.equal("a", seen.vararg.key)
    assert.equal("2", seen.callable[2].value)
    assert.equal("c", seen.own[2].key)
    assert.same({}, seen.err_only)          -- called, err nil
    p:close()
  end)

  it("are not built for a callback declared function(err), which cannot see them", function()
    if _VERSION == "Lua 5.1" and not jit then
      pending("Lua 5.1 cannot tell a function's parameter count: every callback gets a report")
      return
    end
    -- With the collector stopped, the report tables built while the
    -- messages are produced and flushed stay in the heap.
    local N, value = 2000, ("x"):rep(100)
    local function heap_growth(on_delivery)
      local p = H.producer(m, { on_delivery = on_delivery })
      collectgarbage("collect")
      collectgarbage("stop")
      local before = collectgarbage("count")
      local queued = 0                      -- (luassert's asserts allocate)
      for _ = 1, N do if p:produce("no-report", "k", value) then queued = queued + 1 end end
      local flushed = p:flush(10)
      local grown = collectgarbage("count") - before
      collectgarbage("restart")
      assert.equal(N, queued)
      assert.is_true(flushed)
      p:close()
      return grown
    end
    local errs, failures = 0, 0
    local without = heap_growth(function(err) errs = errs + 1; if err then failures = failures + 1 end end)
    local with = heap_growth(function(err, r) errs = errs + 1; if err or not r.offset then failures = failures + 1 end end)
    assert.equal(2 * N, errs)
    assert.equal(0, failures)
    assert.is_true(with > N * 0.1, ("reports took %.0f KiB"):format(with))   -- > 100 bytes each
    assert.is_true(without < with / 4, ("%.0f KiB without reports, %.0f with"):format(without, with))
  end)

  it("report a failure with a readable message and the error name", function()
    local got
    local p = producers.kafka.new({ bootstrap_servers = "127.0.0.1:1", log_level = "error",
      logger = function() end,
      config = { ["message.timeout.ms"] = 300 },
      on_delivery = function(err, r) got = { err, r } end })
    assert.is_true(p:produce("nowhere", "k", "v"))
    assert.is_true(p:flush(10))
    -- the client error that kept the message from the broker is named
    assert.matches("^Local: Message timed out %(last error: 127%.0%.0%.1:1/bootstrap: "
      .. "Connect to ipv4#127%.0%.0%.1:1 failed: Connection refused", got[1])
    assert.equal("_MSG_TIMED_OUT", got[2].error)
    assert.equal("_TRANSPORT", got[2].cause)
    assert.equal("v", got[2].value)
    p:close()
  end)

  it("report an error the broker returns (fault injection)", function()
    local got = {}
    local p = H.producer(m, { on_delivery = function(err, r) got[#got + 1] = { err, r } end,
                              config = { ["retries"] = 0 } })
    m:create_topic("denied", 1, 1)
    m:push_request_errors(0, "TOPIC_AUTHORIZATION_FAILED")
    assert.is_true(p:produce("denied", "k", "v"))
    assert.is_true(p:flush(10))
    assert.equal(1, #got)
    assert.equal("Broker: Topic authorization failed", got[1][1])
    assert.equal("TOPIC_AUTHORIZATION_FAILED", got[1][2].error)
    p:close()
  end)

  it("survive retriable broker errors and deliver once", function()
    local got = {}
    local p = H.producer(m, { on_delivery = function(err, r) got[#got + 1] = { err, r } end })
    m:create_topic("retry", 1, 1)
    m:push_request_errors(0, "NOT_ENOUGH_REPLICAS", "NOT_ENOUGH_REPLICAS")
    assert.is_true(p:produce("retry", "k", "v"))
    assert.is_true(p:flush(10))
    assert.equal(1, #got)
    assert.is_nil(got[1][1])
    p:close()
  end)

  describe("the default report", function()
    it("logs failures at error level with the error", function()
      local log = H.recorder()
      local p = producers.kafka.new({ bootstrap_servers = "127.0.0.1:1", logger = log.fn,
                                      config = { ["message.timeout.ms"] = 300 } })
      assert.is_true(p:produce("lost", "k", "v"))
      assert.is_true(p:flush(10))
      assert.truthy(log.find("^delivery failed: lost %[%-?%d+%]: Local: Message timed out "
        .. "%(_MSG_TIMED_OUT; last error: .*Connection refused.*%(_TRANSPORT%)%)$", "error"), log.text())
      p:close()
    end)

    it("logs successes only at debug level", function()
      local quiet, loud = H.recorder(), H.recorder()
      local p1 = H.producer(m, { logger = quiet.fn })
      local p2 = H.producer(m, { logger = loud.fn, log_level = "debug" })
      assert.is_true(p1:produce("dbg", "k", "v"))
      assert.is_true(p2:produce("dbg", "k", "v"))
      assert.is_true(p1:flush(10))
      assert.is_true(p2:flush(10))
      assert.is_nil(quiet.find("^delivered"))
      assert.truthy(loud.find("^delivered to dbg %[%d+%] at offset %d+$", "debug"))
      p1:close()
      p2:close()
    end)

    it("goes to a logger object's methods", function()
      local lines = {}
      local logger = {}
      for _, level in ipairs({ "debug", "info", "warning", "error" }) do
        logger[level] = function(self, msg)
          assert.equal(logger, self)
          lines[#lines + 1] = level .. ": " .. msg
        end
      end
      local p = producers.kafka.new({ bootstrap_servers = "127.0.0.1:1", logger = logger,
                                      config = { ["message.timeout.ms"] = 300 } })
      assert.is_true(p:produce("obj", "k", "v"))
      assert.is_true(p:flush(10))
      local found = false
      for _, l in ipairs(lines) do found = found or l:find("^error: delivery failed: obj") ~= nil end
      assert.is_true(found)
      p:close()
    end)
  end)

  describe("flush and close", function()
    -- linger.ms of 60 s against timeouts of 5 s: these pass only if flush
    -- and close have librdkafka send at once, as confluent-kafka's flush does
    local function lingering(topic, reports)
      m:create_topic(topic, 3, 1)
      local p = H.producer(m, { config = { ["linger.ms"] = 60000 },
                                on_delivery = function(err, r) reports[#reports + 1] = err or r.offset end })
      for i = 1, 5 do assert.is_true(p:produce(topic, "k" .. i, "v" .. i)) end
      return p
    end

    it("flush sends what lingers at once and serves its reports", function()
      local reports = {}
      local p = lingering("linger-flush", reports)
      assert.equal(0, p:poll(0.2))                -- lingering: nothing reported yet
      assert.is_true(p:flush(5))
      assert.equal(5, #reports)
      for _, r in ipairs(reports) do assert.is_number(r) end   -- delivered, not failed
      p:close()
    end)

    it("close delivers what lingers rather than purging it", function()
      local reports = {}
      local p = lingering("linger-close", reports)
      p:close(5)
      assert.equal(5, #reports)
      for _, r in ipairs(reports) do assert.is_number(r) end
    end)
  end)

  describe("a callback that raises", function()
    it("makes the call that ran it raise, loses no report and runs none twice", function()
      local seen = {}
      local p = H.producer(m, { on_delivery = function(_, r)
        seen[#seen + 1] = r.key
        if r.key == "k3" then error("boom in callback") end
      end })
      m:create_topic("raise", 1, 1)
      for i = 1, 6 do assert.is_true(p:produce("raise", "k" .. i, "v")) end
      local ok, err = pcall(p.flush, p, 10)
      assert.is_false(ok)
      assert.matches("spec/core/delivery_spec%.lua:%d+: boom in callback", err)
      assert.matches("stack traceback", err)
      assert.is_true(p:flush(10))
      assert.same({ "k1", "k2", "k3", "k4", "k5", "k6" }, seen)
      assert.is_true(p:produce("raise", "k7", "v"))
      assert.is_true(p:flush(10))
      assert.equal("k7", seen[7])
      p:close()
    end)

    it("raises from poll too, with a non-string error object intact", function()
      local p = H.producer(m, { on_delivery = function() error({ code = 42 }) end })
      assert.is_true(p:produce("raise2", "k", "v"))
      local ok, err
      H.wait_until(function()
        ok, err = pcall(p.poll, p, 0.05)
        return not ok
      end, 10)
      assert.is_false(ok)
      assert.same({ code = 42 }, err)
      p:close()
    end)
  end)

  describe("re-entry from a callback", function()
    it("may produce and poll the same producer; the outer call serves the reports", function()
      local p
      local keys, served = {}, {}
      p = H.producer(m, { on_delivery = function(_, r)
        keys[#keys + 1] = r.key
        if r.key == "first" then
          assert.is_true(p:produce("reenter", "second", "v"))
          served[#served + 1] = p:poll(0)
        end
        if r.key == "second" then
          assert.is_true(p:produce("reenter", "third", "v"))
        end
      end })
      assert.is_true(p:produce("reenter", "first", "v"))
      assert.is_true(p:flush(10))
      assert.same({ "first", "second", "third" }, keys)
      assert.same({ 0 }, served)
      p:close()
    end)

    for _, method in ipairs({ "flush", "close" }) do
      it("may not " .. method .. " the producer", function()
        local p, err
        p = H.producer(m, { on_delivery = function() p[method](p) end })
        assert.is_true(p:produce("reenter", "k", "v"))
        local ok
        ok, err = pcall(p.flush, p, 10)
        assert.is_false(ok)
        assert.matches(method .. ": not allowed from a delivery callback, logger or encoder of the same producer",
          err, 1, true)
        assert.is_false(p:is_closed())
        p:close()
        assert.is_true(p:is_closed())
      end)
    end
  end)
end)
