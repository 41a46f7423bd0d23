-- A C host built against the build under test (no install): the Lua it
-- was configured for (CMakeCache's LUA_CFLAGS and LUA_LIBRARIES) and the
-- build's libproducers, found at run time through an rpath. Used by the
-- specs whose case needs a host of their own (spec/packaging/embed_log,
-- spec/core/hook_interrupt); spec/packaging/embed_spec.lua builds against
-- the installed packages instead.
--   local host = require("support.c_host").build("spec/support/hook_host.c", "-pthread")
--   ... host.path ...; host.remove()
local H = require("helpers")

local M = {}

--- Compiles source (relative to the project's root) with extra flags
-- into a temporary folder; raises with the compiler's output on failure.
-- Returns { dir =, path =, remove = function() }.
function M.build(source, extra)
  local root, build = H.dirs("build")
  local cache = H.read(build .. "/CMakeCache.txt") or ""
  local cflags = cache:match("\nLUA_CFLAGS:INTERNAL=([^\n]*)") or ""
  local libs = cache:match("\nLUA_LIBRARIES:INTERNAL=([^\n]*)") or ""
  local lib = H.sh("ls " .. H.shell_quote(build) .. "/lib*-producers.so"):match("[^\n]+")
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. H.shell_quote(dir)))
  local path = dir .. "/" .. source:match("([^/]+)%.c$")
  local link = {}
  for l in libs:gmatch("[^;%s]+") do link[#link + 1] = l:find("/") and l or "-l" .. l end
  local out, ok = H.sh(("env -u LD_PRELOAD cc %s/%s -I%s/include -I%s/include %s %s %s %s -Wl,-rpath,%s -o %s")
    :format(H.shell_quote(root), source, H.shell_quote(root), H.shell_quote(build), cflags, H.shell_quote(lib),
            table.concat(link, " "), extra or "", H.shell_quote(build), H.shell_quote(path)))
  assert(ok, out)
  return { dir = dir, path = path, remove = function() os.execute("rm -rf " .. H.shell_quote(dir)) end }
end

return M
