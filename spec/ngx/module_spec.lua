-- producers.ngx and producers.resty_kafka outside nginx: a stub `ngx`
-- (timers that the spec fires, a semaphore that yields the coroutine,
-- phases the spec sets) around real producers on librdkafka's mock
-- cluster. The real-nginx specs (12, integration/60) are the proof; this
-- one pins the logic and the messages on every Lua the suite runs.
local system = require("system")
local H = require("helpers")
local it_luv = pcall(require, "luv") and it or pending
local unpack = table.unpack or unpack

local stub = require("support.ngx_stub")
local unload = stub.unload

local MOCK = { ["test.mock.num.brokers"] = 1 }

describe("producers.ngx (stubbed ngx)", function()
  local S, kafka
  before_each(function()
    S = stub()
    kafka = require("producers.ngx")
  end)
  after_each(function() stub.leave(S, kafka.exit) end)

  it("refuses to load without nginx's lua module", function()
    _G.ngx = nil
    unload()
    local ok, err = pcall(require, "producers.ngx")
    assert.is_false(ok)
    assert.matches("producers.ngx: needs nginx's lua module", err, 1, true)
    _G.ngx = {}
  end)

  describe("check", function()
    it("returns true for good options and names a bad one", function()
      assert.is_true(kafka.check{ bootstrap_servers = "h:1", shared_dict = "producers" })
      local cases = {
        { { bootstrap_servers = "h:1", config = { ["linger.msec"] = 5 } },
          "producers.ngx: config: unknown property 'linger.msec'" },
        { { bootstrap_servers = "h:1", close_timeout = 1 },
          "producers.ngx: option 'close_timeout' (1 s) must be longer than config's reconnect.backoff.max.ms (1000 ms)" },
        { { bootstrap_servers = "h:1", close_timeout = 20, config = { ["reconnect.backoff.max.ms"] = 30000 } },
          "option 'close_timeout' (20 s) must be longer than config's reconnect.backoff.max.ms (30000 ms)" },
        { { bootstrap_servers = "h:1", poll_interval = "fast" }, "producers.ngx: option 'poll_interval' must be a number, got string" },
        { { bootstrap_servers = "h:1", send_timeout = 0 }, "option 'send_timeout' must be a number of seconds > 0, got 0" },
        { { bootstrap_servers = "h:1", max_reports = 1.5 }, "option 'max_reports' must be an integer from 1 to 1000000, got 1.5" },
        { { bootstrap_servers = "h:1", shared_dict = "nope" }, "no lua_shared_dict named 'nope'" },
        { { bootstrap_servers = "h:1", bogus = 1 }, "unknown option 'bogus'" },
        { { bootstrap_servers = "h:1", on_delivery = 1 }, "option 'on_delivery' must be a function, got number" },
        { "h:1", "producers.ngx: expected a table of options, got string" },
      }
      for _, case in ipairs(cases) do
        local ok, err = kafka.check(case[1])
        assert.is_nil(ok)
        assert.matches(case[2], err, 1, true)
      end
    end)
  end)

  describe("init", function()
    it("refuses the master (init_by_lua), returns the same producer for the same options", function()
      S.phase = "init"
      assert.has_error(function() kafka.init{ config = MOCK } end,
        "producers.ngx: init: call it in init_worker_by_lua* (each worker, after the fork), not in "
        .. "init_by_lua*: librdkafka's threads do not survive the fork")
      S.phase = "init_worker"
      local p = kafka.init{ config = MOCK, shared_dict = "producers" }
      assert.equal(p, kafka.init{ config = MOCK, shared_dict = "producers" })
      assert.equal(p, kafka.producer())
      assert.equal(1, #S.timers)
      assert.has_error(function() kafka.init{ config = MOCK } end,
        "producers.ngx: init: this worker's producer was made with other options; "
        .. "use producers.ngx.new(opts) for another one")
      assert.is_truthy(S.find("producers: producer 'default' ready in worker 100"))
      -- the reconnect backoff the module sets
      assert.equal(1000, kafka.CONFIG["reconnect.backoff.max.ms"])
    end)

    it("produce answers _STATE before init", function()
      local got = { kafka.produce("t", "k", "v") }
      assert.same({ nil, "producers.ngx: produce: no producer in this worker (call init in init_worker_by_lua*)", "_STATE" },
        { got[1], got[2], got[3] })
      assert.equal("_STATE", got[4].name)         -- nil, message, name, err
      assert.equal(got[2], got[4].message)
    end)
  end)

  describe("produce", function()
    it_luv("runs no callback itself; the timer runs it once, and counts", function()
      kafka.init{ config = MOCK, shared_dict = "producers" }
      local calls, phase = {}, nil
      S.phase = "log"
      assert.is_true(kafka.produce("t", "k", "v", { on_delivery = function(err, r)
        calls[#calls + 1] = { err = err, offset = r.offset, value = r.value }
        phase = ngx.get_phase()
      end }))
      -- its report waits (the event descriptor is readable): a produce
      -- that served reports would serve it now
      local fd = kafka.producer().producer:event_fd()
      assert.is_true(H.wait_until(function() return H.readable(fd) end, 10, function() system.sleep(0.005) end))
      assert.is_true(kafka.produce("t", "k2", "v2"))
      assert.equal(0, #calls)
      assert.is_true(S.until_(function() return #calls == 1 end))
      assert.equal("timer", phase)
      assert.same({ { offset = 0, value = "v" } }, calls)
      assert.is_true(S.until_(function() return kafka.metrics().delivered == 2 end))
      assert.same({ delivered = 2, failed = 0, purged = 0, queued = 0, unreported = 0 }, kafka.metrics())
      assert.equal(1, #calls)
    end)

    it("logs a raising callback once, with context, and goes on", function()
      kafka.init{ config = MOCK }
      local ran = 0
      assert.is_true(kafka.produce("t", "k", "v", { on_delivery = function() error("boom") end }))
      assert.is_true(kafka.produce("t", "k", "v", { on_delivery = function() ran = ran + 1 end }))
      assert.is_true(S.until_(function() return ran == 1 end))
      assert.equal(1, S.count("producers: delivery callback raised (topic t ["))
      assert.is_truthy(S.find("boom"))
    end)
  end)

  describe("misuse", function()
    -- the error names this file and the line of the call, not ngx.lua's
    local function raised_at(fn)
      local line = debug.getinfo(2, "l").currentline
      local ok, err = pcall(fn)
      assert.is_false(ok)
      assert.is_nil(err:find("ngx.lua", 1, true), err)
      return err, line
    end

    it("raises at the caller's line in produce and send (a number key, a function value)", function()
      local inst = kafka.init{ config = MOCK }
      S.phase = "log"
      local err, line = raised_at(function() kafka.produce("t", 42, "v") end)
      assert.equal(("spec/ngx/module_spec.lua:%d: key: expected string or nil, got number"):format(line), err)
      err, line = raised_at(function() inst:produce("t", "k", function() end) end)
      assert.equal(("spec/ngx/module_spec.lua:%d: value: expected table, string or nil, got function")
        :format(line), err)
      err, line = raised_at(function() kafka.produce("t", "k", "v", { on_delivery = 1 }) end)
      assert.equal(("spec/ngx/module_spec.lua:%d: producers.ngx: on_delivery must be a function, got number")
        :format(line), err)
      S.phase = "content"
      err, line = raised_at(function() kafka.send("t", 7, "v") end)
      assert.equal(("spec/ngx/module_spec.lua:%d: key: expected string or nil, got number"):format(line), err)
      err, line = raised_at(function() inst:send("t", "k", "v", { timeout = -1 }) end)
      assert.equal(("spec/ngx/module_spec.lua:%d: opts.timeout: expected a number of seconds > 0, got -1")
        :format(line), err)
      -- the producer goes on
      S.phase = "log"
      assert.is_true(kafka.produce("t", "k", "v"))
      assert.is_true(S.until_(function() return kafka.metrics().delivered == 1 end))
    end)
  end)

  describe("send", function()
    it("cannot wait where the phase does not yield", function()
      kafka.init{ config = MOCK }
      for _, phase in ipairs({ "log", "header_filter", "body_filter", "set", "init_worker" }) do
        S.phase = phase
        local got = { kafka.send("t", "k", "v") }
        assert.same({ nil, ("send: cannot wait in the %s phase; use produce"):format(phase) }, { got[1], got[2] })
        assert.equal("_STATE", got[3])            -- nil, message, name, err
        assert.equal("_STATE", got[4].name)
      end
    end)

    it("yields until its report, then returns it", function()
      kafka.init{ config = MOCK }
      S.phase = "content"
      local co = coroutine.create(function() return kafka.send("t", "k", "v", { timeout = 5 }) end)
      local ok, what = coroutine.resume(co)
      assert.is_true(ok)
      assert.equal("wait", what)
      local results
      assert.is_true(S.until_(function()
        if coroutine.status(co) == "suspended" then
          local _, a, b = coroutine.resume(co)
          if coroutine.status(co) == "dead" then results = { a, b } end
        end
        return results ~= nil
      end))
      assert.equal("v", results[1].value)
      assert.equal(0, results[1].offset)
    end)

    it("returns nil and a timeout message when no report comes", function()
      kafka.init{ bootstrap_servers = "127.0.0.1:1", close_timeout = 1.1, config = { ["message.timeout.ms"] = 60000 } }
      S.phase = "content"
      local co = coroutine.create(function() return kafka.send("t", "k", "v", { timeout = 0.5 }) end)
      assert.same({ true, "wait" }, { coroutine.resume(co) })
      local got = { coroutine.resume(co, "timeout") }
      assert.same({ true, nil, "send: no delivery report within 0.5 s", "_TIMED_OUT" }, { got[1], got[2], got[3], got[4] })
      assert.equal("_TIMED_OUT", got[5].name)     -- nil, message, name, err
      assert.equal(got[3], got[5].message)
    end)
  end)

  describe("metrics", function()
    it("counters is metrics under its older name, on the module and on an instance", function()
      local inst = kafka.init{ config = MOCK, shared_dict = "producers" }
      assert.equal(kafka.metrics, kafka.counters)
      assert.equal(inst.metrics, inst.counters)
      S.phase = "log"
      assert.is_true(kafka.produce("t", "k", "v"))
      assert.is_true(S.until_(function() return kafka.metrics().delivered == 1 end))
      local want = { delivered = 1, failed = 0, purged = 0, queued = 0, unreported = 0 }
      assert.same(want, kafka.counters())
      assert.same(want, kafka.counters("default"))
      assert.same(want, inst:counters())
      assert.same(want, inst:metrics())
      assert.same({ nil, "producers.ngx: metrics: no producer named 'other' in this worker" }, { kafka.counters("other") })
    end)

    it("without shared_dict: this worker's, by the same formula as the exit line", function()
      local inst = kafka.init{ config = MOCK }
      S.phase = "log"
      for i = 1, 3 do assert.is_true(kafka.produce("t", "k" .. i, "v")) end
      assert.is_true(S.until_(function() return kafka.metrics().delivered == 3 end))
      assert.same({ delivered = 3, failed = 0, purged = 0, queued = 0, unreported = 0 }, inst:counters())
      S.phase = "exit_worker"
      kafka.exit()
      assert.equal(1, S.count("producers: producer 'default' closed in worker 100: 3 delivered, 0 failed, 0 purged"))
    end)
  end)

  describe("a delivery callback that re-enters the API", function()
    it("from the timer: produce, send (waits), metrics, close; the runner runs the rest once, in order", function()
      local inst = kafka.init{ config = MOCK }
      local seen, read = {}, nil
      S.phase = "log"
      assert.is_true(kafka.produce("t", "k", "first", { on_delivery = function()
        seen[#seen + 1] = "first"
        assert(kafka.produce("t", "k", "second", { on_delivery = function(err)
          seen[#seen + 1] = "second " .. tostring(err)
        end }))
        local r, err = kafka.send("t", "k", "third", { timeout = 5 })
        seen[#seen + 1] = r and "sent " .. r.value or "send failed: " .. tostring(err)
        read = kafka.metrics()
        inst:close()
        seen[#seen + 1] = "closed"
      end }))
      -- the timer's light thread as a coroutine (its send waits); while it
      -- waits, the timer runs again beside it and wakes the send
      S.phase = "timer"
      local co = coroutine.create(S.tick)
      assert.is_true(H.wait_until(function()
        if coroutine.status(co) == "dead" then
          if seen[#seen] ~= "closed" and #seen < 4 then co = coroutine.create(S.tick) else return true end
        end
        assert(coroutine.resume(co))
        if coroutine.status(co) == "suspended" then S.tick() end
        return false
      end, 10, function() system.sleep(0.01) end), table.concat(seen, ", "))
      assert.same({ "first", "sent third", "closed", "second nil" }, seen)
      assert.equal(0, S.count("delivery callback raised"))
      -- read while the callback ran: first, second and third delivered
      assert.same({ delivered = 3, failed = 0, purged = 0, queued = 0, unreported = 0 }, read)
      assert.is_true(inst.closed)
      assert.equal(1, S.count("producers: producer 'default' closed in worker 100"))
      S.phase = "exit_worker"
      kafka.exit()                                 -- closed already: nothing more
      assert.equal(1, S.count("producers: producer 'default' closed in worker 100"))
    end)

    it("at exit: produce and send answer, metrics reads, exit and close do nothing; one summary", function()
      local inst = kafka.init{ bootstrap_servers = "127.0.0.1:1", close_timeout = 1.1, shared_dict = "producers",
                               logger = function() end }
      local calls, got = 0, {}
      assert.is_true(kafka.produce("t", "k", "v", { on_delivery = function(err, r)
        calls = calls + 1
        got.name = r.error
        got.produce = { kafka.produce("t", "k", "again") }
        got.inst_produce = { inst:produce("t", "k", "again") }
        got.send = { inst:send("t", "k", "again") }
        got.metrics = kafka.metrics()
        kafka.exit()
        inst:close()
      end }))
      S.phase = "exit_worker"
      kafka.exit()
      kafka.exit()                                 -- a second exit does nothing
      assert.equal(1, calls)
      assert.equal("_PURGE_QUEUE", got.name)
      assert.same({ nil, "producers.ngx: produce: no producer in this worker (call init in init_worker_by_lua*)", "_STATE" },
        { got.produce[1], got.produce[2], got.produce[3] })
      assert.same({ nil, "producer is closed", "_DESTROY" }, { got.inst_produce[1], got.inst_produce[2], got.inst_produce[3] })
      assert.equal("_DESTROY", got.inst_produce[4].name)
      assert.same({ nil, "send: cannot wait in the exit_worker phase; use produce", "_STATE" },
        { got.send[1], got.send[2], got.send[3] })
      assert.is_table(got.metrics)
      assert.equal(1, S.count("producers: producer 'default' closed in worker 100: 0 delivered, 0 failed, 1 purged"))
      assert.same({ delivered = 0, failed = 0, purged = 1, queued = 0, unreported = 0 }, kafka.metrics())
    end)

    it("a raising callback at exit is logged with its context; the next one runs", function()
      kafka.init{ bootstrap_servers = "127.0.0.1:1", close_timeout = 1.1, logger = function() end }
      local ran = 0
      assert.is_true(kafka.produce("t", "k", "v", { on_delivery = function() error("boom at exit") end }))
      assert.is_true(kafka.produce("t", "k", "v", { on_delivery = function() ran = ran + 1 end }))
      S.phase = "exit_worker"
      kafka.exit()
      assert.equal(1, ran)
      assert.equal(1, S.count("producers: delivery callback raised at exit (topic t ["))
      assert.is_truthy(S.find("boom at exit"))
    end)
  end)

  describe("send's failures", function()
    it("a failed delivery: nil, message, name, err with err.report the report", function()
      kafka.init{ bootstrap_servers = "127.0.0.1:1", close_timeout = 1.1, logger = function() end,
                  config = { ["message.timeout.ms"] = 200 } }
      S.phase = "content"
      local co = coroutine.create(function() return kafka.send("t", "k", "v", { timeout = 5 }) end)
      assert.same({ true, "wait" }, { coroutine.resume(co) })
      local got
      assert.is_true(S.until_(function()
        if not got then
          local r = { coroutine.resume(co) }
          if coroutine.status(co) == "dead" then got = r end
        end
        return got ~= nil
      end))
      assert.is_true(got[1])
      assert.is_nil(got[2])
      assert.matches("^Local: Message timed out", got[3])
      assert.equal("_MSG_TIMED_OUT", got[4])
      local err = got[5]
      assert.equal("_MSG_TIMED_OUT", err.name)
      assert.matches("^Local: Message timed out", err.message)
      assert.same({ "t", "k", "v", "_MSG_TIMED_OUT", -1001 },
        { err.report.topic, err.report.key, err.report.value, err.report.error, err.report.offset })
    end)

    it("a refusal passes produce's four values on", function()
      local inst = kafka.init{ bootstrap_servers = "127.0.0.1:1", close_timeout = 1.1, logger = function() end,
                               config = { ["queue.buffering.max.messages"] = 1 } }
      S.phase = "content"
      assert.is_true(inst:produce("t", "k", "v"))
      local got = { inst:send("t", "k", "v") }     -- refused at once: no wait
      assert.same({ nil, "Local: Queue full", "_QUEUE_FULL" }, { got[1], got[2], got[3] })
      assert.equal("_QUEUE_FULL", got[4].name)
    end)
  end)

  describe("exit", function()
    it("closes, purges what is left, runs their callbacks and logs one line", function()
      kafka.init{ bootstrap_servers = "127.0.0.1:1", close_timeout = 1.1, shared_dict = "producers",
                  logger = function() end }
      local got = {}
      assert.is_true(kafka.produce("t", "k", "v", { on_delivery = function(err, r) got[#got + 1] = r.error end }))
      assert.is_true(kafka.produce("t", "k2", "v2"))
      S.phase = "exit_worker"
      kafka.exit()
      assert.same({ "_PURGE_QUEUE" }, got)
      assert.equal(1, S.count("producers: producer 'default' closed in worker 100: 0 delivered, 0 failed, "
        .. "2 purged (not delivered); 2 were waiting at exit"))
      assert.is_nil(S.find("closed with"))
      assert.is_nil(S.find("delivery failed"))     -- purged: in the summary only
      assert.same({ delivered = 0, failed = 0, purged = 2, queued = 0, unreported = 0 }, kafka.metrics())
      local got = { kafka.produce("t", "k", "v") }
      assert.same({ nil, "producers.ngx: produce: no producer in this worker (call init in init_worker_by_lua*)", "_STATE" },
        { got[1], got[2], got[3] })
      assert.equal("_STATE", got[4].name)
    end)

    it("a worker killed with messages queued: the next worker to start moves them to unreported, once", function()
      local nowhere = { bootstrap_servers = "127.0.0.1:1", close_timeout = 1.1, shared_dict = "producers",
                        logger = function() end, config = { ["message.timeout.ms"] = 60000 } }
      -- worker 100: 3 queued
      local old = kafka.init(nowhere)
      S.phase = "log"
      for i = 1, 3 do assert.is_true(kafka.produce("t", "k" .. i, "v")) end
      assert.is_true(S.until_(function() return kafka.metrics().queued == 3 end))
      -- worker 101 starts beside it (100 alive), queues 2
      S.timers = {}
      S.pid, S.phase = 101, "init_worker"
      unload()
      kafka = require("producers.ngx")
      kafka.alive = function() return true end
      local leaving = kafka.init(nowhere)
      S.phase = "log"
      for i = 1, 2 do assert.is_true(kafka.produce("t", "k" .. i, "v")) end
      assert.is_true(S.until_(function() return kafka.metrics().queued == 5 end))
      assert.is_truthy(S.dict.values["default:held:100:1"])
      assert.is_nil(S.find("died without closing"))
      -- 100 is killed (its timer stops, no exit), 101 is leaving (a
      -- reload), 102 starts: it folds 100's, not 101's
      S.timers = {}
      S.pid, S.phase = 102, "init_worker"
      unload()
      kafka = require("producers.ngx")
      kafka.alive = function(pid) return pid ~= 100 end
      kafka.init(nowhere)
      assert.equal(1, S.count("producers: worker 100 died without closing producer 'default' with 3 message(s) "
        .. "unreported (counted in 'unreported', no longer in 'queued')"))
      assert.same({ delivered = 0, failed = 0, purged = 0, queued = 2, unreported = 3 }, kafka.metrics())
      assert.is_nil(S.dict.values["default:held:100:1"])
      assert.is_nil(S.find("worker 101 died"))
      -- 103 starts too: nothing left to fold
      S.pid = 103
      unload()
      kafka = require("producers.ngx")
      kafka.alive = function(pid) return pid ~= 100 end
      kafka.init(nowhere)
      assert.equal(1, S.count("died without closing"))
      -- 101 closes as it should: it held 2, purged; its key goes
      S.phase = "exit_worker"
      leaving:close()
      assert.same({ delivered = 0, failed = 0, purged = 2, queued = 0, unreported = 3 }, kafka.metrics())
      assert.is_nil(S.dict.values["default:held:101:1"])
      old.producer:close(0)
    end)

    it("a leaving worker keeps serving from the premature timer until the queue is empty", function()
      kafka.init{ config = MOCK }
      local ran = 0
      assert.is_true(kafka.produce("t", "k", "v", { on_delivery = function() ran = ran + 1 end }))
      S.exiting = true
      S.phase = "timer"
      local co = coroutine.create(function() S.tick(true) end)
      for _ = 1, 500 do
        assert.is_true((coroutine.resume(co)))
        if coroutine.status(co) == "dead" then break end
        system.sleep(0.01)
      end
      assert.equal("dead", coroutine.status(co))
      assert.equal(1, ran)
    end)
  end)
end)

describe("producers.resty_kafka (stubbed ngx)", function()
  local S, producer, kafka
  before_each(function()
    S = stub()
    kafka = require("producers.ngx")
    producer = require("producers.resty_kafka")
    S.phase = "content"
  end)
  after_each(function()
    S.phase = "exit_worker"
    kafka.exit()
    _G.ngx = nil
  end)

  local brokers = { { host = "127.0.0.1", port = 1 } }

  it("maps lua-resty-kafka's options to librdkafka properties", function()
    local p = producer:new(brokers, {
      producer_type = "async", request_timeout = 3000, required_acks = -1, max_retry = 5,
      retry_backoff = 200, flush_time = 20, batch_num = 300, batch_size = 65536, max_buffering = 5000,
      socket_timeout = 4000, keepalive_timeout = 60000, refresh_interval = 30000, client_id = "c1",
      ssl = true, ssl_verify = false, api_version = 2, keepalive_size = 4, partitioner = function() end,
    })
    local key = p.inst.key
    for _, expect in ipairs({
      'request.timeout.ms=number:3000', 'acks=number:-1', 'message.send.max.retries=number:5',
      'retry.backoff.ms=number:200', 'linger.ms=number:20', 'batch.num.messages=number:300',
      'batch.size=number:65536', 'queue.buffering.max.messages=number:5000',
      'socket.timeout.ms=number:4000', 'connections.max.idle.ms=number:60000',
      'topic.metadata.refresh.interval.ms=number:30000', 'client.id="c1"',
      'security.protocol="SSL"', 'enable.ssl.certificate.verification=boolean:false',
      'bootstrap_servers="127.0.0.1:1"',
    }) do
      assert.matches(expect:gsub("%p", "%%%0"), key)
    end
    local sasl = producer:new({ { host = "h", port = 9, sasl_config = { mechanism = "SCRAM-SHA-512", user = "u", password = "pw" } } })
    assert.matches('sasl_mechanism="SCRAM%-SHA%-512"', sasl.inst.key)
    assert.matches('security%.protocol="SASL_PLAINTEXT"', sasl.inst.key)
    assert.has_error(function() producer:new(brokers, { flush_tiem = 1 }) end,
      "producers.resty_kafka: unknown producer_config option 'flush_tiem'")
    assert.has_error(function() producer:new({ { host = "h" } }) end,
      "producers.resty_kafka: broker_list[1] must be { host = string, port = number }")
  end)

  it("makes one producer per worker for the same broker list and settings", function()
    local a = producer:new(brokers, { producer_type = "async" })
    local b = producer:new(brokers, { producer_type = "async" })
    local s = producer:new(brokers)
    assert.equal(a, b)
    assert.equal(a.inst, s.inst)
    assert.is_false(s.async)
    assert.equal(1, #S.timers)
  end)

  it("async send queues; error_handle gets each failed message as lua-resty-kafka passes it", function()
    local calls = {}
    local p = producer:new(brokers, {
      producer_type = "async", config = { ["message.timeout.ms"] = 200 },
      error_handle = function(...) calls[#calls + 1] = { ... } end,
    })
    assert.same({ true }, { p:send("t", nil, "m1") })
    assert.is_true(S.until_(function() return #calls == 1 end))
    local topic, partition, queue, index, err, retryable = unpack(calls[1])
    assert.equal("t", topic)
    assert.equal(-1, partition)
    assert.same({ "", "m1" }, queue)
    assert.equal(2, index)
    assert.matches("Message timed out", err)
    assert.is_false(retryable)
    assert.same({ nil, "topic: expected string, got nil" }, { p:send(nil, "k", "v") })
    assert.is_true(p:flush())
  end)

  it("sync send returns the offset; the client stub says metadata is unsupported", function()
    local ok_inst = producer:new({ { host = "127.0.0.1", port = 1 } }, { config = MOCK })
    local co = coroutine.create(function() return ok_inst:send("t", "key", "halo world") end)
    local first = { coroutine.resume(co) }
    assert.same({ true, "wait" }, first)
    local results
    assert.is_true(S.until_(function()
      if results then return true end
      local _, a, b = coroutine.resume(co)
      if coroutine.status(co) == "dead" then results = { a, b } end
      return results ~= nil
    end))
    assert.same({ 0 }, results)
    local sum, details = ok_inst:offset()
    assert.equal(0, sum)
    local n = 0
    for _, offset in pairs(details.t) do n = n + 1; assert.equal(0, offset) end
    assert.equal(1, n)
    local cli = producer.client:new(brokers)
    local brokers_, err = cli:fetch_metadata("t")
    assert.is_nil(brokers_)
    assert.matches("not supported", err)
  end)
end)
