-- C and C++ hosts embed Lua and open producers from the installed
-- libraries (examples/embed), with no Lua search path. The Lua 5.4 build
-- under test and a LuaJIT build ($PRODUCERS_LUAJIT_BUILD_DIR, which
-- scripts/test.sh builds first; else one configured here) install into
-- one prefix side by side; each host is built with only its package's
-- pkg-config flags or its CMake package.
local H = require("helpers")

local lua = os.getenv("PRODUCERS_LUA") or "lua5.4"
local describe_54 = lua == "lua5.4" and describe or pending
local sh, q = H.sh, H.shell_quote

local PACKAGES = { ["lua5.4-producers"] = "liblua5%.4%.so", ["luajit-producers"] = "libluajit%-5%.1%.so" }
local GC_TIMEOUT = 1           -- gc_flush_timeout of the unreachable producers (s)

describe_54("embedding in C and C++ programs #embed", function()
  local root, build = H.dirs("build")
  local prefix, work, pc
  local example = root .. "/examples/embed"
  local produce = q(example .. "/produce.lua")
  local expected = "^embedded producers %d+%.%d+%.%d+: delivered 3 %(module from preload%)\n$"

  local function write(name, text)
    local f = assert(io.open(work .. "/" .. name, "w"))
    f:write(text)
    f:close()
    return q(work .. "/" .. name)
  end

  -- runs a host from /, with no Lua paths in the environment
  local function run(cmd)
    return sh("cd / && env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 LD_LIBRARY_PATH="
      .. q(prefix .. "/lib") .. " " .. cmd)
  end

  setup(function()
    prefix = os.tmpname()
    work = os.tmpname()
    os.remove(prefix)
    os.remove(work)
    assert(os.execute("mkdir -p " .. q(work)))
    pc = "PKG_CONFIG_PATH=" .. q(prefix .. "/lib/pkgconfig") .. " pkg-config"
    local jit = os.getenv("PRODUCERS_LUAJIT_BUILD_DIR")
    if not jit or jit == "" then
      jit = work .. "/build-luajit"
      local out, ok = sh(("cmake -S %s -B %s -DPRODUCERS_LUA=luajit -DPRODUCERS_TESTS=OFF -DPRODUCERS_BENCH=OFF >/dev/null && cmake --build %s -j 2 >/dev/null")
        :format(q(root), q(jit), q(jit)))
      assert(ok, out)
    end
    for _, dir in ipairs({ build, jit }) do
      local out, ok = sh(("cmake --install %s --prefix %s"):format(q(dir), q(prefix)))
      assert(ok, out)
    end
  end)
  teardown(function()
    os.execute(("rm -rf %s %s"):format(q(prefix), q(work)))
  end)

  it("installs the 5.4 and LuaJIT builds into one prefix under names of their own", function()
    for name in pairs(PACKAGES) do
      for _, f in ipairs({ "lib/lib" .. name .. ".so.0", "lib/lib" .. name .. ".a",
                           "lib/pkgconfig/" .. name .. ".pc", "lib/pkgconfig/" .. name .. "-static.pc",
                           "lib/cmake/" .. name .. "/" .. name .. "Config.cmake",
                           "include/" .. name .. "/producers.h", "include/" .. name .. "/producers_lua.h" }) do
        assert.truthy(io.open(prefix .. "/" .. f), f)
      end
    end
    assert.truthy(io.open(prefix .. "/lib/lua/5.4/producers/core.so"))
    assert.truthy(io.open(prefix .. "/lib/lua/5.1/producers/core.so"))
  end)

  for name, liblua in pairs(PACKAGES) do
    it(name .. ": a C host built with only `pkg-config --cflags --libs " .. name .. "` runs", function()
      local out, ok = sh(("cc %s/host.c $(%s --cflags --libs %s) -o %s/pc-%s"):format(q(example), pc, name, q(work), name))
      assert.is_true(ok, out)
      out, ok = run(("%s/pc-%s %s"):format(q(work), name, produce))
      assert.is_true(ok, out)
      assert.matches(expected, out)
      local ldd = run(("ldd %s/pc-%s"):format(q(work), name))
      assert.matches("lib" .. name:gsub("%p", "%%%0") .. "%.so%.0 => " .. prefix:gsub("%p", "%%%0"), ldd)
      assert.matches(liblua, ldd)
    end)

    it(name .. ": a C++ host (g++, producers.h before lua.hpp) built with pkg-config runs", function()
      local out, ok = sh(("g++ -Wall -Werror %s/host.cpp $(%s --cflags --libs %s) -o %s/cpp-%s")
        :format(q(example), pc, name, q(work), name))
      assert.is_true(ok, out)
      out, ok = run(("%s/cpp-%s %s"):format(q(work), name, produce))
      assert.is_true(ok, out)
      assert.matches(expected, out)
    end)

    it(name .. ": hosts built with find_package(" .. name .. ") run, static, shared and C++", function()
      local dir = work .. "/cmake-" .. name
      local out, ok = sh(("cmake -S %s -B %s -DCMAKE_PREFIX_PATH=%s -DPRODUCERS_PACKAGE=%s >/dev/null && cmake --build %s")
        :format(q(example), q(dir), q(prefix), name, q(dir)))
      assert.is_true(ok, out)
      for _, host in ipairs({ "host", "host_shared", "host_cpp" }) do
        out, ok = run(("%s/%s %s"):format(q(dir), host, produce))
        assert.is_true(ok, host .. ": " .. out)
        assert.matches(expected, out)
      end
      assert.falsy(run(("ldd %s/host"):format(q(dir))):find("producers"), "the static host links no libproducers .so")
    end)
  end

  it("the static recipe links the archive: pkg-config --static --libs lua5.4-producers-static", function()
    local out, ok = sh(("cc %s/host.c $(%s --static --cflags --libs lua5.4-producers-static) -o %s/static")
      :format(q(example), pc, q(work)))
    assert.is_true(ok, out)
    out, ok = run(("%s/static %s"):format(q(work), produce))
    assert.is_true(ok, out)
    assert.matches(expected, out)
    assert.falsy(run(("ldd %s/static"):format(q(work))):find("producers"))
  end)

  it("producers.h stops the compile on another Lua's lua.h", function()
    local src = write("check.c", "#include <producers.h>\nint main(void) { return 0; }\n")
    local out, ok = sh(("cc -c -I/usr/include/lua5.4 $(%s --cflags luajit-producers) %s -o /dev/null"):format(pc, src))
    assert.is_false(ok)
    assert.matches("not the Lua this libproducers was built for", out)
    out, ok = sh(("cc -c -I/usr/include/lua5.1 $(%s --cflags luajit-producers) %s -o /dev/null"):format(pc, src))
    assert.is_false(ok)
    assert.matches("built for LuaJIT, <lua.h> is PUC Lua 5.1's", out)
    out, ok = sh(("cc -c $(%s --cflags lua5.4-producers) %s -o /dev/null"):format(pc, src))
    assert.is_true(ok, out)
  end)

  it("find_package(lua5.4-producers QUIET) without rdkafka.pc sets FOUND to FALSE, no error", function()
    local dir = work .. "/quiet"
    assert(os.execute("mkdir -p " .. q(dir .. "/src") .. " " .. q(dir .. "/empty")))
    local f = assert(io.open(dir .. "/src/CMakeLists.txt", "w"))
    f:write([[
cmake_minimum_required(VERSION 3.16)
project(quiet C)
find_package(lua5.4-producers QUIET)
message(STATUS "FOUND=${lua5.4-producers_FOUND}")
]])
    f:close()
    -- pkg-config sees only an empty folder: no rdkafka.pc, no lua5.4.pc
    local out, ok = sh(("PKG_CONFIG_LIBDIR=%s cmake -S %s/src -B %s/build -DCMAKE_PREFIX_PATH=%s")
      :format(q(dir .. "/empty"), q(dir), q(dir), q(prefix)))
    assert.is_true(ok, out)
    assert.matches("FOUND=0", out)
  end)

  describe("sandboxed host (base, package, string, table, math; a C log hook)", function()
    local sandbox = {}
    setup(function()
      for name in pairs(PACKAGES) do
        sandbox[name] = work .. "/sandbox-" .. name
        local out, ok = sh(("cc -Wall %s/sandbox.c $(%s --cflags --libs %s) -o %s")
          :format(q(example), pc, name, q(sandbox[name])))
        assert(ok, out)
      end
    end)

    for name in pairs(PACKAGES) do
      it(name .. ": produces with the default logger, whose lines reach the hook", function()
        local script = write("sandboxed.lua", [[
assert(io == nil and os == nil and debug == nil, "io, os or debug is open")
local producers = require("producers")
local p = producers.kafka.new{ config = { ["test.mock.num.brokers"] = 1 }, log_level = "debug" }
for i = 1, 3 do assert(p:produce("sandboxed", "k" .. i, { n = i })) end
assert(p:flush(10))
print("delivered " .. p:stats().delivered)
p:close()
local offsets = {}
local cb = producers.kafka.new{ config = { ["test.mock.num.brokers"] = 1 },
  on_delivery = function(err, r) offsets[#offsets + 1] = r.offset end }
assert(cb:produce("sandboxed", "k", "v"))
assert(cb:flush(10))
cb:close()
print("callback offsets " .. #offsets)
local m = producers.memory.new{}
assert(m:produce("sandboxed", "k", { n = 1 }))
m:flush()
print("memory " .. m.messages[1].value .. " at " .. type(m.messages[1].timestamp))
]])
        local out, ok = run(q(sandbox[name]) .. " " .. script)
        assert.is_true(ok, out)
        assert.matches("\ndelivered 3\n", out)
        assert.matches("\ncallback offsets 1\n", out)
        assert.matches('\nmemory {"n":1} at number\n', out, 1, true)
        assert.matches("hook info: librdkafka MOCK", out, 1, true)
        assert.falsy(out:find("attempt to index"), out)
      end)

      it(name .. ": lua_close with four unreachable producers returns within one gc_flush_timeout", function()
        local script = write("unreachable.lua", ([[
local producers = require("producers")
keep = {}
for i = 1, 4 do
  keep[i] = producers.kafka.new{ bootstrap_servers = "127.0.0.1:1", gc_flush_timeout = %d,
                                 log_level = "error", logger = function() end,
                                 config = { ["message.timeout.ms"] = 60000 } }
  assert(keep[i]:produce("t", "k", "v" .. i))
end
]]):format(GC_TIMEOUT))
        local out, ok = run(q(sandbox[name]) .. " " .. script)
        assert.is_true(ok, out)
        local ms = tonumber(out:match("lua_close: (%d+) ms"))
        assert.is_number(ms, out)
        assert.is_true(ms < 1500 * GC_TIMEOUT, ("lua_close took %d ms: %s"):format(ms, out))
        local _, lines = out:gsub("hook warn: [^\n]* collected with 1 message%(s%) not delivered", "")
        assert.equal(4, lines, out)
      end)
    end

  end)
end)
