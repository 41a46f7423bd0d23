-- Memory safety of the producing paths, checked by valgrind, and the
-- registry refs our callbacks use.
local producers = require("producers")
local H = require("helpers")

local function callback_refs()
  local n = 0
  for k, v in pairs(debug.getregistry()) do
    if type(k) == "number" and type(v) == "function" then n = n + 1 end
  end
  return n
end

describe("registry refs", function()
  it("are all released: served, failed, purged, collected", function()
    local m = producers.mock_cluster(1)
    collectgarbage()
    local before = callback_refs()
    local p = producers.kafka.new{ bootstrap_servers = m:bootstraps(), on_delivery = function() end }
    for i = 1, 50 do assert.is_true(p:produce("refs", "k", "v", { on_delivery = function() end })) end
    assert.has_error(function() p:produce("refs", "k", { f = print }, { on_delivery = function() end }) end)
    assert.is_true(p:flush(10))
    p:close()
    local stuck = producers.kafka.new{ bootstrap_servers = "127.0.0.1:1", logger = function() end }
    for i = 1, 5 do assert.is_true(stuck:produce("refs", "k", "v", { on_delivery = function() end })) end
    stuck:close(0)
    local dropped = producers.kafka.new{ bootstrap_servers = "127.0.0.1:1", gc_flush_timeout = 0,
                                         logger = function() end }
    assert.is_true(dropped:produce("refs", "k", "v", { on_delivery = function() end }))
    dropped = nil
    collectgarbage()
    collectgarbage()
    assert.equal(before, callback_refs())
    m:close()
  end)
end)

describe("valgrind #valgrind", function()
  it("finds no invalid access and no leak in every producing path", function()
    local build = os.getenv("PRODUCERS_BUILD_DIR") or "build"
    local lua = os.getenv("PRODUCERS_LUA") or "lua5.4"
    local log = os.tmpname()
    local out, ok, code = H.sh(("LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH=%s valgrind --quiet "
      .. "--keep-debuginfo=yes --leak-check=full --errors-for-leak-kinds=definite,indirect "
      .. "--suppressions=spec/support/valgrind.supp --error-exitcode=99 --log-file=%s "
      .. "%s spec/support/leakcheck.lua")
      :format(H.shell_quote(build .. "/?.so;;"), log, lua))
    local report = assert(io.open(log)):read("*a")
    os.remove(log)
    assert.matches("leakcheck: 902 delivered", out)
    assert.is_true(ok, ("valgrind exit %s\n%s\n%s"):format(tostring(code), out, report))
  end)
end)
