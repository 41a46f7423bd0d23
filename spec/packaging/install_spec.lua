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

  -- GNUInstallDirs: with prefix /usr, Debian's multiarch libdir (which
  -- Debian's lua5.4 searches), pkg-config files that find their prefix
  -- from their own folder. Configured apart, once, in the 5.4 suite, not
  -- under ASan (its preloaded runtime would check the compiler for leaks).
  local sanitized = (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true)
  local it_54 = (os.getenv("PRODUCERS_LUA") or "lua5.4") == "lua5.4" and not sanitized and it or pending
  it_54("follows GNUInstallDirs: prefix /usr installs into the multiarch libdir #install_dirs", function()
    local work = os.tmpname()
    os.remove(work)
    local q = H.shell_quote
    local out, ok = H.sh(("cmake -S . -B %s/b -DCMAKE_INSTALL_PREFIX=/usr -DPRODUCERS_TESTS=OFF -DPRODUCERS_BENCH=OFF >/dev/null "
      .. "&& cmake --build %s/b -j 2 >/dev/null && DESTDIR=%s/root cmake --install %s/b >/dev/null && "
      .. "grep -E '^CMAKE_INSTALL_LIBDIR:' %s/b/CMakeCache.txt"):format(q(work), q(work), q(work), q(work), q(work)))
    local libdir = out:match("=(%S+)")
    local files = H.sh(("cd %s/root && find . -type f | sort"):format(q(work)))
    local cflags = H.sh(("PKG_CONFIG_PATH=%s/root/usr/%s/pkgconfig pkg-config --cflags lua5.4-producers")
      :format(q(work), libdir or "lib"))
    os.execute("rm -rf " .. q(work))
    assert.is_true(ok, out)
    assert.is_string(libdir)
    for _, f in ipairs({ "./usr/" .. libdir .. "/lua/5.4/producers/core.so", "./usr/share/lua/5.4/producers/init.lua",
                         "./usr/" .. libdir .. "/liblua5.4-producers.so.0.1.0",
                         "./usr/" .. libdir .. "/pkgconfig/lua5.4-producers.pc",
                         "./usr/" .. libdir .. "/cmake/lua5.4-producers/lua5.4-producersConfig.cmake",
                         "./usr/include/lua5.4-producers/producers.h" }) do
      assert.truthy(files:find(f, 1, true), f .. " in\n" .. files)
    end
    assert.matches("/root/usr/" .. libdir:gsub("%p", "%%%0") .. "/pkgconfig/%.%./%.%./%.%./include/lua5%.4%-producers", cflags)
  end)
end)
