-- The spool's glue (core/spooling.c) under valgrind: every path once
-- (spec/support/spool_leakcheck.lua), no invalid access, no leak.
local H = require("helpers")

describe("the spool under valgrind #valgrind", function()
  it("finds no invalid access and no leak in produce, refusals, re-sends, replay, adoption and collection", function()
    local build = os.getenv("PRODUCERS_BUILD_DIR") or "build"
    local lua = os.getenv("PRODUCERS_LUA") or "lua5.4"
    local log = os.tmpname()
    local out, ok, code = H.sh(("LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH=%s valgrind --quiet "
      .. "--keep-debuginfo=yes --leak-check=full --errors-for-leak-kinds=definite,indirect "
      .. "--suppressions=spec/support/valgrind.supp --error-exitcode=99 --log-file=%s "
      .. "%s spec/support/spool_leakcheck.lua")
      :format(H.shell_quote(build .. "/?.so;;"), log, lua))
    local report = assert(io.open(log)):read("*a")
    os.remove(log)
    local delivered = tonumber(out:match("spool leakcheck: (%d+) delivered"))
    assert.is_not_nil(delivered, out)
    assert.is_true(delivered > 100, out)
    assert.is_true(ok, ("valgrind exit %s\n%s\n%s"):format(tostring(code), out, report))
  end)
end)
