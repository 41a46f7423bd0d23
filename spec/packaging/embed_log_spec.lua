-- The default logger in an embedded host that sets no log hook (issue
-- #26, a survivor of the mutation check): examples/embed/host.c, built
-- here against the build under test (no install), runs a script whose
-- producer logs with the default logger; its lines go to stderr as
-- "TIME producers LEVEL message" (log.c's prd_log_write without a hook),
-- and the host ends normally. spec/packaging/embed_spec.lua covers the
-- installed packages and the hook.
local H = require("helpers")

local sanitized = (os.getenv("LD_PRELOAD") or ""):find("asan") ~= nil
local describe_plain = sanitized and pending or describe

describe_plain("an embedded host without a log hook", function()
  local dir, host, built
  setup(function()
    built = require("support.c_host").build("examples/embed/host.c")
    dir, host = built.dir, built.path
  end)
  teardown(function() if built then built.remove() end end)

  it("writes the default logger's lines to stderr, stamped, and ends normally", function()
    local script = dir .. "/warn.lua"
    local f = assert(io.open(script, "w"))
    f:write([[
local producers = require("producers")
local p = producers.kafka.new{ bootstrap_servers = "127.0.0.1:1", log_level = "warn" }
assert(p:produce("t", "k", "v"))
p:close(0)
print("closed")
]])
    f:close()
    local out, ok = H.sh(("cd / && env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 %s %s 2>&1")
      :format(H.shell_quote(host), H.shell_quote(script)))
    assert.is_true(ok, out)
    assert.matches("closed\n", out, 1, true)
    assert.matches("%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ producers WARN [^\n]* closed with 1 message%(s%) not delivered\n", out)
  end)
end)
