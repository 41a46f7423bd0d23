-- A hook set by the host ends a wait, and the call's values reach the
-- script (issue #26, the mutation check's gap in src/core/signal.c's
-- prd_watch_fail): spec/support/hook_host.c, built here against the build
-- under test as spec/packaging/embed_log_spec.lua builds its host, sets
-- a harmless hook from its SIGALRM handler (lua.c's way of ending a wait
-- on Ctrl-C, without the error) while p:flush(8) waits for a refused
-- broker. flush returns at once with docs/signals.md's failure for a hook
-- change: nil, "interrupted" (no signal name: the call cannot know which
-- signal set the hook), "_INTR", err with err.queued. The interpreter's
-- own Ctrl-C raises at once, so spec/core/signals_spec.lua sees its error,
-- never these values.
local H = require("helpers")

local sanitized = (os.getenv("LD_PRELOAD") or ""):find("asan") ~= nil
local describe_plain = sanitized and pending or describe

describe_plain("a hook set by the host's signal handler during flush", function()
  local dir, host, built
  setup(function()
    built = require("support.c_host").build("spec/support/hook_host.c", "-pthread")
    dir, host = built.dir, built.path
  end)
  teardown(function() if built then built.remove() end end)

  it("makes flush return nil, 'interrupted', '_INTR', err (err.queued 1) within a second", function()
    local out, ok = H.sh(("cd / && env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 %s %s 2>&1")
      :format(H.shell_quote(host), H.shell_quote(H.refused_address())))
    assert.is_true(ok, out)
    local ms = tonumber(out:match("\nflush|nil|interrupted|_INTR|1|table|(%d+)\n")
                        or out:match("^flush|nil|interrupted|_INTR|1|table|(%d+)\n"))
    assert(ms, out)
    -- the first SIGALRM comes 300 ms in; a wait checks every 0.1 s
    assert.is_true(ms < 1500, out)
    -- the hook ran in Lua once flush returned, and removed itself
    assert.matches("\nhook ran [1-9]%d*\n", out)
  end)
end)
