-- The spool's glue (core/spooling.c) under valgrind: every path once
-- (spec/support/spool_leakcheck.lua), no invalid access, no leak.
local H = require("helpers")

describe("the spool under valgrind #valgrind", function()
  it("finds no invalid access and no leak in produce, refusals, re-sends, replay, adoption and collection", function()
    local out, ok, code, report = H.valgrind("spec/support/spool_leakcheck.lua")
    local delivered = tonumber(out:match("spool leakcheck: (%d+) delivered"))
    assert.is_not_nil(delivered, out)
    assert.is_true(delivered > 100, out)
    assert.is_true(ok, ("valgrind exit %s\n%s\n%s"):format(tostring(code), out, report))
  end)
end)
