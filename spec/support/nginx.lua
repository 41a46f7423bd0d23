-- What the nginx specs (spec/ngx/nginx_spec.lua, spec/integration/60) share: files, the
-- processes of a running nginx, a free port, starting, quitting and
-- stopping nginx, counting lines of a log.
local H = require("helpers")

local N = {}

function N.write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- Alive and not a zombie: the daemonized master's parent may never reap it.
function N.alive(pid)
  local stat = H.read("/proc/" .. pid .. "/stat")
  return stat ~= nil and not stat:match("^%d+ %b() Z")
end

-- The pids of pid's children (nginx's workers), sorted.
function N.children(pid)
  local pids = {}
  for child in H.sh("ps -o pid= --ppid " .. pid):gmatch("%d+") do pids[#pids + 1] = child end
  table.sort(pids)
  return pids
end

-- A port nothing listens on, outside Linux's ephemeral range (where the
-- mock cluster's and curl's ports come from); callers retry on a clash.
function N.free_port()
  local listening = H.listening_ports()
  for _ = 1, 100 do
    local port = math.random(20000, 32000)
    if not listening[port] then return port end
  end
  error("no free port")
end

local q = H.shell_quote

--- The checkout's root and the LuaJIT build nginx loads (absolute):
-- $PRODUCERS_NGINX_BUILD_DIR, else $PRODUCERS_BUILD_DIR when
-- PRODUCERS_LUA is luajit, else build-luajit.
function N.luajit_build()
  local root = io.popen("pwd"):read("*l")
  local build = os.getenv("PRODUCERS_NGINX_BUILD_DIR")
    or (os.getenv("PRODUCERS_LUA") == "luajit" and os.getenv("PRODUCERS_BUILD_DIR"))
    or "build-luajit"
  if build:sub(1, 1) ~= "/" then build = root .. "/" .. build end
  return root, build
end

--- busted's describe when nginx and the LuaJIT build in build are there;
-- else a function that marks the block pending, saying what is missing.
function N.describe_nginx(build)
  local busted = require("busted")
  if H.sh("command -v nginx") ~= "" and H.read(build .. "/producers/core.so") then return busted.describe end
  return function(name)
    busted.pending(name .. ": needs nginx and the LuaJIT build in " .. build)
  end
end

-- When the master runs as root, nginx runs its workers as nobody, who
-- cannot enter a checkout under a folder only its owner may (root's home
-- is mode 700 on Debian, and so is what mktemp -d makes): a worker then
-- fails to load whatever the master did not load before the fork
-- (bench/nginx's init_worker module, a module required on first use).
-- The workers run as the invoking user instead (`-g "user ...;"`, nginx's
-- own directive): they read exactly what the master reads, wherever the
-- checkout lives. Copying what they load into the prefix would be the
-- other way, but each config names its own Lua paths and build (and
-- core.so its libraries), so a copy would always miss something.
-- Not root: nginx ignores `user` (with a warning), and needs none.
local USER = ""
if H.sh("id -u"):match("^0\n?$") then
  USER = "-g " .. q(("user %s %s;"):format(H.sh("id -un"):match("[^\n]+"), H.sh("id -gn"):match("[^\n]+")))
end
N.USER_ARGS = USER

-- Waits up to timeout seconds for cond(), trying every 50 ms.
local function wait(cond, timeout)
  return H.wait_until(cond, timeout, function() H.sh("sleep 0.05") end)
end

--- Wall clock in seconds (os.time() counts whole seconds only).
function N.now() return tonumber((H.sh("date +%s.%N"))) end

--- text with from (found exactly once) replaced by to.
function N.replace_once(text, from, to)
  local s, e = text:find(from, 1, true)
  assert(s and not text:find(from, e + 1, true), "expected once: " .. from)
  return text:sub(1, s - 1) .. to .. text:sub(e + 1)
end

--- Ends the master and its workers whatever state a test left them in,
-- then the processes in n.background; removes the prefix.
function N.stop(n)
  if not n then return end
  if n.pid and N.alive(n.pid) then
    local workers = N.children(n.pid)
    H.sh("kill -TERM " .. n.pid)
    if not wait(function() return not N.alive(n.pid) end, 5) then
      for _, w in ipairs(workers) do H.sh("kill -KILL " .. w) end
      for _, w in ipairs(N.children(n.pid)) do H.sh("kill -KILL " .. w) end
      H.sh("kill -KILL " .. n.pid)
    end
  end
  for _, pid in ipairs(n.background or {}) do H.sh("kill -TERM " .. pid .. " 2>/dev/null") end
  H.sh("rm -rf " .. q(n.prefix))
end

--- An nginx master in a fresh prefix on a free port (retried when the
-- port is taken meanwhile), KAFKA_BOOTSTRAP_SERVERS=bootstraps in its
-- environment: setup(n) writes n.conf (and what else it needs) for
-- n.port; ready(n) is true once it answers (waited for up to 10 s).
-- n: prefix, conf, port, url, pid, cmd(args), log(), background (pids
-- that stop ends too).
function N.start(bootstraps, setup, ready)
  local last
  for _ = 1, 5 do
    local prefix = (H.sh("mktemp -d /tmp/producers-nginx.XXXXXX")):match("[^\n]+")
    local n = { prefix = prefix, conf = prefix .. "/nginx.conf", port = N.free_port(), background = {} }
    n.url = ("http://127.0.0.1:%d"):format(n.port)
    local out, made = H.sh(("chmod 755 %s && mkdir %s/logs"):format(q(prefix), q(prefix)))
    assert(made, out)
    setup(n)
    function n.cmd(args)
      return ("nginx -p %s/ -c %s -e logs/error.log %s %s"):format(q(prefix), q(n.conf), USER, args or "")
    end
    function n.log() return H.read(prefix .. "/logs/error.log") or "" end
    local _, ok = H.sh(("cd %s && KAFKA_BOOTSTRAP_SERVERS=%s %s </dev/null >logs/start.out 2>&1")
      :format(q(prefix), q(bootstraps), n.cmd()))
    last = (H.read(prefix .. "/logs/start.out") or "") .. n.log()
    if ok then
      n.pid = tonumber((H.read(prefix .. "/logs/nginx.pid") or ""):match("%d+"))
      if n.pid and wait(function() return ready(n) end, 10) then return n end
      local log = n.log()
      N.stop(n)                   -- the caller never sees n: stop it here
      error((n.pid and "nginx does not answer:\n" or "nginx wrote no pid file:\n") .. log)
    end
    H.sh("rm -rf " .. q(prefix))
    if not last:find("Address already in use", 1, true) then break end
  end
  error("nginx did not start:\n" .. last)
end

--- nginx -s quit, then waits for the master to exit; returns the
-- seconds taken.
function N.quit(n, timeout)
  local started = N.now()
  local out, ok = H.sh(n.cmd("-s quit"))
  assert(ok, out)
  assert(wait(function() return not N.alive(n.pid) end, timeout),
    "nginx master still running after -s quit:\n" .. n.log())
  return N.now() - started
end

-- How many times plain occurs in text.
function N.count(text, plain)
  local n, pos = 0, 1
  while true do
    local s, e = text:find(plain, pos, true)
    if not s then return n end
    n, pos = n + 1, e + 1
  end
end

return N
