-- luarocks with the README's commands, from a clean checkout (git clone of
-- this repository's HEAD into a temporary folder, so no build.luarocks/
-- of this tree takes part), offline: `luarocks --lua-version 5.4 make`,
-- `luarocks --lua-version 5.4 path`, then LuaJIT in the same checkout
-- (its build.luarocks/ left by the 5.4 run must not leak into it), and
-- `luarocks pack producers`. Runs once, in the Lua 5.4 suite.
local H = require("helpers")

local lua = os.getenv("PRODUCERS_LUA") or "lua5.4"
local describe_54 = lua == "lua5.4" and describe or pending
local rockspec = "rockspec/producers-0.1.0-1.rockspec"
local sh, q = H.sh, H.shell_quote

local LUAS = {
  { name = "Lua 5.4", version = "5.4", interp = "lua5.4", args = "" },
  { name = "LuaJIT", version = "5.1", interp = "luajit", args = " LUA_INCDIR=/usr/include/luajit-2.1" },
}

local PROBE = [[
local producers = require("producers")
local n = 0
local p = producers.kafka.new{ config = { ["test.mock.num.brokers"] = 1 }, log_level = "warn",
                               on_delivery = function(err) if not err then n = n + 1 end end }
for i = 1, 5 do assert(p:produce("rock", "k", { i = i })) end
assert(p:flush(10))
p:close()
io.write(package.searchpath("producers.core", package.cpath), " delivered ", n, " librdkafka ", producers.librdkafka_version)
]]

describe_54("luarocks, as the README says #luarocks", function()
  local root = H.dirs("build")
  local checkout, tree

  -- the README's command line, in the checkout, into the test's tree
  local function luarocks(version, args)
    return sh(("cd %s && luarocks --lua-version %s --tree %s %s"):format(q(checkout), version, q(tree), args))
  end

  -- runs PROBE with the paths `luarocks path` prints, from /
  local function probe(l)
    return sh(("eval \"$(luarocks --lua-version %s --tree %s path)\" && cd / && %s -e %s")
      :format(l.version, q(tree), l.interp, q(PROBE)))
  end

  setup(function()
    checkout = os.tmpname()
    tree = os.tmpname()
    os.remove(checkout)
    os.remove(tree)
    local out, ok = sh(("git clone -q %s %s"):format(q(root), q(checkout)))
    assert(ok, out)
  end)
  teardown(function()
    os.execute(("rm -rf %s %s"):format(q(checkout), q(tree)))
  end)

  for _, l in ipairs(LUAS) do
    it(l.name .. ": luarocks make installs a module that `luarocks path` finds", function()
      local out, ok = luarocks(l.version, "make " .. rockspec .. l.args)
      assert.is_true(ok, out)
      assert.matches("producers 0%.1%.0%-1 is now installed", out)
      out, ok = probe(l)
      assert.is_true(ok, out)
      assert.matches(("^%s/lib/lua/%s/producers/core%%.so delivered 5 librdkafka ")
        :format(tree:gsub("%p", "%%%0"), l.version:gsub("%p", "%%%0")), out)
    end)
  end

  for _, l in ipairs(LUAS) do
    it(l.name .. ": luarocks pack producers makes a binary rock of the installed module", function()
      local out, ok = luarocks(l.version, "pack producers")
      assert.is_true(ok, out)
      local rock = out:match("Packed: (%S+%.rock)")
      assert.truthy(rock, out)
      local list = sh("unzip -l " .. q(rock))
      assert.matches("lib/producers/core%.so", list)
      assert.matches("lua/producers/init%.lua", list)
      os.remove(rock)
    end)
  end

  it("RDKAFKA_DIR reaches CMake: the module links the librdkafka it names", function()
    local dir = os.getenv("PRODUCERS_RDKAFKA_DIR")
    if not dir or dir == "" then
      dir = (os.getenv("HOME") or "") .. "/.cache/producers/librdkafka-2.8.0"
    end
    if not io.open(dir .. "/lib/pkgconfig/rdkafka.pc") then
      return pending("no librdkafka build in " .. dir .. " (scripts/librdkafka.sh makes one)")
    end
    local version = H.read(dir .. "/lib/pkgconfig/rdkafka.pc"):match("\nVersion: (%S+)")
    local out, ok = luarocks("5.4", "make " .. rockspec .. " RDKAFKA_DIR=" .. q(dir))
    assert.is_true(ok, out)
    out, ok = probe(LUAS[1])
    assert.is_true(ok, out)
    assert.matches(" librdkafka " .. version:gsub("%p", "%%%0") .. "$", out)
  end)

  it("names librdkafka when it cannot be found", function()
    local out, ok = luarocks("5.4", "make " .. rockspec .. " RDKAFKA_DIR=/nonexistent")
    assert.is_falsy(ok)
    assert.matches("Could not find header file for RDKAFKA", out)
    assert.matches("librdkafka/rdkafka%.h", out)
  end)
end)
