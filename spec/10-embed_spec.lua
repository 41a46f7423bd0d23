-- A C host embeds Lua and opens producers from the installed static or
-- shared library (examples/embed), with no Lua search path.
local H = require("helpers")

local lua = os.getenv("PRODUCERS_LUA") or "lua5.4"
local build = os.getenv("PRODUCERS_BUILD_DIR") or "build"
local describe_54 = lua == "lua5.4" and describe or pending

local sh = H.sh

describe_54("embedding in a C program #embed", function()
  local prefix, work
  setup(function()
    prefix = os.tmpname()
    work = os.tmpname()
    os.remove(prefix)
    os.remove(work)
    local out, ok = sh(("cmake --install %s --prefix %s"):format(H.shell_quote(build), prefix))
    assert(ok, out)
  end)
  teardown(function()
    os.execute(("rm -rf %s %s"):format(prefix, work))
  end)

  local expected = "^embedded producers %d+%.%d+%.%d+: delivered 3 %(module from preload%)\n$"
  local script = H.shell_quote(io.popen("pwd"):read("*l") .. "/examples/embed/produce.lua")

  it("builds with find_package(producers) and the static library, and runs", function()
    local out, ok = sh(("cmake -S examples/embed -B %s/cmake -DCMAKE_PREFIX_PATH=%s >/dev/null && cmake --build %s/cmake")
      :format(work, prefix, work))
    assert.is_true(ok, out)
    out, ok = sh(("cd / && env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 %s/cmake/host %s")
      :format(work, script))
    assert.is_true(ok, out)
    assert.matches(expected, out)
  end)

  it("builds with pkg-config and the shared library, and runs", function()
    local out, ok = sh(("mkdir -p %s/pc && cc examples/embed/host.c $(PKG_CONFIG_PATH=%s/lib/pkgconfig pkg-config --cflags --libs producers lua5.4) -o %s/pc/host")
      :format(work, prefix, work))
    assert.is_true(ok, out)
    out, ok = sh(("cd / && LD_LIBRARY_PATH=%s/lib %s/pc/host %s"):format(prefix, work, script))
    assert.is_true(ok, out)
    assert.matches(expected, out)
    local ldd = sh(("LD_LIBRARY_PATH=%s/lib ldd %s/pc/host"):format(prefix, work))
    assert.matches("libproducers%.so%.0 => " .. prefix:gsub("%p", "%%%0"), ldd)
  end)
end)
