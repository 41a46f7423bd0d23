-- A debug hook that was already set when a waiting call starts (a
-- profiler's, a coverage tool's count hook) is no interrupt: the call
-- takes the hook it starts with as its baseline (src/core/signal.c,
-- prd_watch_start) and waits as usual; only a hook that changes while it
-- waits (lua.c's Ctrl-C, spec/core/signals_spec.lua) cuts it short.
-- Issue #26: the mutation sample's survivor that drops that baseline.
local producers = require("producers")
local H = require("helpers")

describe("a hook set before a waiting call", function()
  local m
  setup(function() m = producers.mock_cluster(1) end)
  teardown(function() m:close() end)

  it("does not interrupt flush: it waits and every message is delivered", function()
    local got = {}
    local p = H.producer(m, { on_delivery = function(err) got[#got + 1] = err or "ok" end })
    m:create_topic("hooked", 1, 1)
    assert.is_true(p:flush(10))                   -- connected, metadata known
    m:broker_set_rtt(1, 300)                      -- the delivery takes a few slices
    local hook, mask, count = debug.gethook()
    debug.sethook(function() end, "", 1000000)
    local ok, r1, r2, r3 = pcall(function()
      assert.is_true(p:produce("hooked", "k", "v"))
      return p:flush(10)
    end)
    debug.sethook(hook, mask, count)
    m:broker_set_rtt(1, 0)
    assert.is_true(ok, tostring(r1))
    assert.same({ true }, { r1, r2, r3 })
    assert.same({ "ok" }, got)
    p:close()
  end)
end)
