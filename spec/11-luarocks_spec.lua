-- `luarocks make` with the rockspec builds and installs the module from
-- this tree, offline (dependencies from Debian), for the Lua under test.
local H = require("helpers")

local lua = os.getenv("PRODUCERS_LUA") or "lua5.4"
local version = lua == "luajit" and "5.1" or lua:match("^lua(%d%.%d)$")
local rockspec = "rockspec/producers-0.1.0-1.rockspec"

local sh = H.sh

describe("luarocks make #luarocks", function()
  local tree
  before_each(function()
    tree = os.tmpname()
    os.remove(tree)
  end)
  after_each(function()
    os.execute(("rm -rf %s build.luarocks"):format(tree))
  end)

  -- LuaJIT keeps its headers apart from Lua 5.1's.
  local incdir = lua == "luajit" and " LUA_INCDIR=/usr/include/luajit-2.1" or ""

  it("installs a module that works", function()
    local out, ok = sh(("luarocks --lua-version %s --tree %s make %s --deps-mode=none%s")
      :format(version, tree, rockspec, incdir))
    assert.is_true(ok, out)
    assert.matches("producers 0%.1%.0%-1 is now installed", out)
    out, ok = sh(("cd / && LUA_PATH='%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;;' LUA_CPATH='%s/lib/lua/%s/?.so;;' %s -e %s")
      :format(tree, version, tree, version, tree, version, lua, H.shell_quote([[
        local producers = require("producers")
        local n = 0
        local p = producers.kafka.new{ config = { ["test.mock.num.brokers"] = 1 }, log_level = "warn",
                                       on_delivery = function(err) if not err then n = n + 1 end end }
        for i = 1, 5 do assert(p:produce("rock", "k", { i = i })) end
        assert(p:flush(10))
        p:close()
        io.write(package.searchpath("producers.core", package.cpath), " delivered ", n)
      ]])))
    assert.is_true(ok, out)
    assert.equal(("%s/lib/lua/%s/producers/core.so delivered 5"):format(tree, version), out)
  end)

  it("names librdkafka when it cannot be found", function()
    local out, ok = sh(("luarocks --lua-version %s --tree %s make %s --deps-mode=none RDKAFKA_DIR=/nonexistent%s")
      :format(version, tree, rockspec, incdir))
    assert.is_falsy(ok)
    assert.matches("Could not find header file for RDKAFKA", out)
    assert.matches("librdkafka/rdkafka%.h", out)
  end)
end)
