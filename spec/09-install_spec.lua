-- `cmake --install` lays the module out in the standard Lua tree, and the
-- installed copy works with nothing from the source tree on the path.
local H = require("helpers")

describe("cmake --install", function()
  it("installs producers.core in lib/lua/<v>/ and the Lua files in share/lua/<v>/", function()
    local build = os.getenv("PRODUCERS_BUILD_DIR") or "build"
    local lua = os.getenv("PRODUCERS_LUA") or "lua5.4"
    local abi = (lua == "luajit") and "5.1" or lua:match("^lua(%d%.%d)$")
    local prefix = os.tmpname()
    os.remove(prefix)
    local out, ok = H.sh(("cmake --install %s --prefix %s"):format(H.shell_quote(build), prefix))
    assert.is_true(ok, out)
    for _, f in ipairs({ "lib/lua/" .. abi .. "/producers/core.so", "share/lua/" .. abi .. "/producers/init.lua",
                         "share/lua/" .. abi .. "/producers/kafka.lua" }) do
      assert.truthy(io.open(prefix .. "/" .. f), f)
    end
    local cmd = ("cd / && LUA_PATH='%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;;' LUA_CPATH='%s/lib/lua/%s/?.so;;' "
      .. "%s -e 'local p = require(\"producers\"); local m = p.memory.new(); assert(m:produce(\"t\", \"k\", {a=1})); "
      .. "m:flush(); io.write(package.searchpath(\"producers.core\", package.cpath), \" \", m.messages[1].value)'")
      :format(prefix, abi, prefix, abi, prefix, abi, lua)
    out = H.sh(cmd)
    os.execute("rm -rf " .. H.shell_quote(prefix))
    assert.equal(prefix .. "/lib/lua/" .. abi .. "/producers/core.so " .. '{"a":1}', out)
  end)
end)
