-- Helpers of spec/json/encoder_spec.lua: OpenResty's lua-cjson built for the
-- Lua under test, a comma-decimal locale, child interpreters.
local H = require("helpers")

local U = {}

local root, build = H.dirs("build")
U.root, U.build = root, build
U.lua = os.getenv("PRODUCERS_LUA") or "lua5.4"

-- Tools that are not the library run without the sanitizer build's
-- preloaded runtimes (LSan would fail them for their own leaks).
local PLAIN = "env -u LD_PRELOAD "

--- A shell command's output; raises with it when the command fails.
function U.sh(cmd)
  local out, ok = H.sh(cmd)
  if not ok then error(("command failed: %s\n%s"):format(cmd, out), 2) end
  return out
end

-- The Lua headers the build used (its CMake cache), else the usual ones.
local function lua_incdir()
  local cache = H.read(build .. "/CMakeCache.txt") or ""
  local dir = cache:match("\nLUA_INCDIR:PATH=([^\n]+)")
    or cache:match("\nLUA_INCLUDE_DIRS:INTERNAL=([^;\n]+)")
  if dir and dir ~= "" then return dir end
  if jit then return "/usr/include/luajit-2.1" end
  return "/usr/include/lua" .. _VERSION:match("%d+%.%d+")
end

--- Where OpenResty's lua-cjson sources are: $PRODUCERS_OPENRESTY_CJSON,
-- else ../shared/vendor/openresty-lua-cjson beside the checkout (CI's
-- layout; a clone alone has no such folder). nil, why when absent.
function U.openresty_cjson_src()
  local env = os.getenv("PRODUCERS_OPENRESTY_CJSON")
  local src = env and env ~= "" and env or root .. "/../shared/vendor/openresty-lua-cjson"
  if H.read(src .. "/lua_cjson.c") then return src end
  return nil, "OpenResty's lua-cjson sources not found in " .. src
    .. " (set PRODUCERS_OPENRESTY_CJSON to a checkout of openresty/lua-cjson)"
end

--- OpenResty's lua-cjson, built once into the build folder from
-- U.openresty_cjson_src() (its README's build line) for the Lua under
-- test: the path of its cjson.so; nil, why when the sources are absent.
function U.openresty_cjson()
  local so = build .. "/openresty-cjson/cjson.so"
  if H.read(so) then return so end
  local src, why = U.openresty_cjson_src()
  if not src then return nil, why end
  U.sh(("mkdir -p %s && cd %s && %s gcc -O2 -fPIC -shared -I%s lua_cjson.c strbuf.c fpconv.c -o %s")
    :format(H.shell_quote(build .. "/openresty-cjson"), H.shell_quote(src), PLAIN,
            H.shell_quote(lua_incdir()), H.shell_quote(so)))
  return so
end

--- The fork's module table, loaded from its cjson.so (not through
-- require: the caller decides what package.loaded.cjson holds); nil, why
-- when its sources are absent.
function U.load_openresty_cjson()
  local so, why = U.openresty_cjson()
  if not so then return nil, why end
  return assert(package.loadlib(so, "luaopen_cjson"))()
end

--- A light userdata that is not NULL (Lua cannot make one): what a
-- stand-in for OpenResty's cjson.empty_array needs. From a three-line C
-- module compiled once into the build folder.
function U.light_userdata()
  local so = build .. "/spec-lightuserdata/lightuserdata.so"
  if not H.read(so) then
    local c = build .. "/spec-lightuserdata/lightuserdata.c"
    U.sh("mkdir -p " .. H.shell_quote(build .. "/spec-lightuserdata"))
    local f = assert(io.open(c, "w"))
    f:write("#include <lua.h>\nstatic char anchor;\n",
            "int luaopen_lightuserdata(lua_State *L) { lua_pushlightuserdata(L, &anchor); return 1; }\n")
    f:close()
    U.sh(("%s gcc -O2 -fPIC -shared -I%s %s -o %s"):format(PLAIN, H.shell_quote(lua_incdir()),
      H.shell_quote(c), H.shell_quote(so)))
  end
  return assert(package.loadlib(so, "luaopen_lightuserdata"))()
end

U.LOCALE = "de_DE.UTF-8"

--- The environment under which a child can set LC_NUMERIC to U.LOCALE:
-- "" when the system has it, else LOCPATH naming a copy compiled once
-- into the build folder with localedef (its sources: Debian's `locales`).
function U.locale_env()
  local probe = H.sh(U.lua .. [[ -e 'io.write(tostring(os.setlocale("de_DE.UTF-8", "numeric")))']])
  if probe == U.LOCALE then return "" end
  local dir = build .. "/locale"
  if not H.read(dir .. "/" .. U.LOCALE .. "/LC_NUMERIC") then
    -- localedef exits 1 on warnings with the locale written
    H.sh(("mkdir -p %s && %s localedef -i de_DE -f UTF-8 %s"):format(
      H.shell_quote(dir), PLAIN, H.shell_quote(dir .. "/" .. U.LOCALE)))
    assert(H.read(dir .. "/" .. U.LOCALE .. "/LC_NUMERIC"),
      "cannot make the de_DE.UTF-8 locale (Debian: apt-get install locales)")
  end
  return "LOCPATH=" .. H.shell_quote(dir) .. " "
end

--- Runs a script of spec/support in a child interpreter with the module
-- on its paths: its output; raises when it fails.
function U.run_script(env, script, args)
  return U.sh(("%sLUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH=%s %s spec/support/%s %s")
    :format(env or "", H.shell_quote(build .. "/?.so;;"), U.lua, script, args or ""))
end

--- Python's verdict on a file written by json_roundtrip.lua.
function U.python_check(path)
  return U.sh(PLAIN .. "python3 spec/support/json_check.py " .. H.shell_quote(path))
end

return U
