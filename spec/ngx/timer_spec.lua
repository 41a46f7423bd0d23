-- producers.ngx's report timer and its drain (stubbed ngx, as in
-- spec/ngx/module_spec.lua; issue #26, survivors of the mutation check):
-- a premature tick (nginx stopping its timers) drains the queue; a
-- message produced while the worker leaves starts one zero-delay timer
-- that drains it; init's on_delivery gets (err, report) for messages
-- without their own. Real nginx: spec/ngx/nginx_spec.lua.
local system = require("system")
local stub = require("support.ngx_stub")

local MOCK = { ["test.mock.num.brokers"] = 1 }

-- Runs fn in a coroutine (ngx.sleep and semaphore waits yield) until it
-- ends, 5 s at most; returns whether it ended.
local function run_timer(fn, ...)
  local args = { n = select("#", ...), ... }
  local co = coroutine.create(function() return fn((table.unpack or unpack)(args, 1, args.n)) end)
  for _ = 1, 500 do
    local ok, err = coroutine.resume(co)
    assert(ok, err)
    if coroutine.status(co) == "dead" then return true end
    system.sleep(0.01)
  end
  return false
end

describe("producers.ngx's timer (stubbed ngx)", function()
  local S, kafka
  before_each(function()
    S = stub()
    kafka = require("producers.ngx")
  end)
  after_each(function() stub.leave(S, kafka.exit) end)

  it("drains the queue on a premature tick: every report is served before it returns", function()
    kafka.init{ config = MOCK }
    local got = {}
    S.phase = "log"
    for i = 1, 3 do
      assert.is_true(kafka.produce("t", "k", "v" .. i, { on_delivery = function(err, r) got[#got + 1] = { err, r.value } end }))
    end
    assert.equal(0, #got)
    S.phase = "timer"
    assert.is_true(run_timer(S.tick, true))
    assert.same({ { nil, "v1" }, { nil, "v2" }, { nil, "v3" } }, got)
    assert.equal(0, kafka.producer().producer:queue_length())
  end)

  it("starts one zero-delay timer for messages produced while the worker leaves, which drains them", function()
    kafka.init{ config = MOCK }
    local got = {}
    S.exiting = true
    S.phase = "log"
    assert.equal(0, #S.zero)
    assert.is_true(kafka.produce("t", "k", "a", { on_delivery = function(err, r) got[#got + 1] = { err, r.value } end }))
    assert.is_true(kafka.produce("t", "k", "b", { on_delivery = function(err, r) got[#got + 1] = { err, r.value } end }))
    assert.equal(1, #S.zero)               -- one for both: the first is still to run
    assert.equal(0, #got)
    S.phase = "timer"
    local t = S.zero[1]
    assert.is_true(run_timer(t.fn, false, (table.unpack or unpack)(t.args)))
    assert.same({ { nil, "a" }, { nil, "b" } }, got)
  end)

  it("hands init's on_delivery the error and the report of a message without its own", function()
    local got = {}
    kafka.init{ config = MOCK, on_delivery = function(...) got[#got + 1] = { n = select("#", ...), ... } end }
    S.phase = "log"
    assert.is_true(kafka.produce("t", "key", "value"))
    assert.is_true(kafka.produce("t", "key2", "value2", { on_delivery = function() end }))
    assert.is_true(S.until_(function() return kafka.producer().producer:queue_length() == 0 and #got >= 1 end))
    assert.equal(1, #got)
    assert.equal(2, got[1].n)
    assert.is_nil(got[1][1])
    local r = got[1][2]
    assert.equal("table", type(r))
    assert.same({ "t", "key", "value" }, { r.topic, r.key, r.value })
    assert.equal("number", type(r.offset))
  end)
end)
