-- Shared spec helpers: a mock cluster per spec file, waiting for
-- conditions (never fixed sleeps), reading topics back with kcat.
local producers = require("producers")

local H = {}

local monotime = require("system").monotime     -- seconds, sub-second, monotonic

--- Calls step until cond() holds or timeout seconds (default 10, a
-- fraction allowed) pass on a monotonic clock: a 1 s bound is 1 s, not
-- the 0-2 s of os.time(). Returns whether cond() held.
function H.wait_until(cond, timeout, step)
  local deadline = monotime() + (timeout or 10)
  repeat
    if cond() then return true end
    if step then step() end
  until monotime() >= deadline
  return cond() and true or false
end

--- Whether descriptor fd is readable now (one non-blocking turn of a luv
-- loop; nothing is read). Needs luv.
function H.readable(fd)
  local uv = require("luv")
  local poller, got = uv.new_poll(fd), false
  poller:start("r", function() got = true end)
  uv.run("nowait")
  poller:stop(); poller:close(); uv.run("nowait")
  return got
end

--- A logger that records lines: log.lines = { {level, message}, ... }.
function H.recorder()
  local log = { lines = {} }
  function log.fn(level, message) log.lines[#log.lines + 1] = { level, message } end
  function log.find(pattern, level)
    for _, l in ipairs(log.lines) do
      if (not level or l[1] == level) and l[2]:find(pattern) then return l end
    end
  end
  function log.text()
    local out = {}
    for _, l in ipairs(log.lines) do out[#out + 1] = l[1] .. " " .. l[2] end
    return table.concat(out, "\n")
  end
  return log
end

--- A unique topic name, so specs sharing a cluster do not interfere.
local serial = 0
function H.topic(prefix)
  serial = serial + 1
  return ("%s-%d-%d"):format(prefix or "t", os.time(), serial)
end

--- A producer on the mock cluster m with a recorded logger.
function H.producer(m, opts)
  opts = opts or {}
  opts.bootstrap_servers = opts.bootstrap_servers or m:bootstraps()
  return producers.kafka.new(opts)
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end
H.shell_quote = shell_quote

-- Parses kcat's "%p|%o|%T|%K|%k|%S|%s|%h\n" records using the lengths, so
-- keys and values are compared byte for byte.
local function parse_kcat(out)
  local records, pos = {}, 1
  while pos <= #out do
    local p, o, ts, klen, after = out:match("^(%-?%d+)|(%-?%d+)|(%-?%d+)|(%-?%d+)|()", pos)
    if not p then error("cannot parse kcat output at byte " .. pos .. ": " .. out:sub(pos, pos + 80)) end
    klen = tonumber(klen)
    local key = klen >= 0 and out:sub(after, after + klen - 1) or nil
    pos = after + math.max(klen, 0) + 1
    local vlen, vstart = out:match("^(%-?%d+)|()", pos)
    vlen = tonumber(vlen)
    local value = vlen >= 0 and out:sub(vstart, vstart + vlen - 1) or nil
    pos = vstart + math.max(vlen, 0) + 1
    local hdr_end = out:find("\n", pos, true)
    local headers = {}
    for name, val in out:sub(pos, hdr_end - 1):gmatch("([^,=]+)=([^,]*)") do
      headers[#headers + 1] = { name, val }
    end
    pos = hdr_end + 1
    records[#records + 1] = { partition = tonumber(p), offset = tonumber(o), timestamp = tonumber(ts),
                              key = key, value = value, headers = headers }
  end
  return records
end

--- Reads every message of topic with kcat (an independent client):
-- kcat_args holds -b and any -X options. Bounded by timeout seconds
-- (default 60); raises with kcat's error output when kcat fails. Records
-- come sorted by partition, then offset.
function H.kcat_read_args(kcat_args, topic, timeout)
  local errfile = os.tmpname()
  local out, ok, code = H.sh(("timeout %d kcat -C %s -t %s -o beginning -e -q "
    .. "-f '%%p|%%o|%%T|%%K|%%k|%%S|%%s|%%h\\n' 2>%s")
    :format(timeout or 60, kcat_args, shell_quote(topic), shell_quote(errfile)))
  local f = io.open(errfile)
  local err = f and f:read("*a") or ""
  if f then f:close() end
  os.remove(errfile)
  if not ok then
    error(("kcat failed (exit %s%s) reading %s: %s"):format(tostring(code),
      code == 124 and ", timed out" or "", topic, err), 2)
  end
  local records = parse_kcat(out)
  table.sort(records, function(a, b)
    if a.partition ~= b.partition then return a.partition < b.partition end
    return a.offset < b.offset
  end)
  return records
end

--- kcat_read_args for a plaintext bootstrap list.
function H.kcat_read(brokers, topic, timeout)
  return H.kcat_read_args("-b " .. shell_quote(brokers), topic, timeout)
end

--- Runs a shell command; returns its output (stdout and stderr), whether
-- it exited 0, and its exit code. (Not io.popen's close status: LuaJIT
-- and Lua 5.1 do not report it.)
function H.sh(cmd)
  local f = assert(io.popen("{ " .. cmd .. "\n} 2>&1; echo \"__exit=$?\""))
  local out = f:read("*a")
  f:close()
  local code = tonumber(out:match("__exit=(%d+)\n?$"))
  return out:gsub("__exit=%d+\n?$", ""), code == 0, code
end

--- Registry refs (integer keys) whose values pass keep(v); a freed slot
-- holds the number of the next free one.
function H.registry_refs(keep)
  local n = 0
  for k, v in pairs(debug.getregistry()) do
    if type(k) == "number" and keep(v) then n = n + 1 end
  end
  return n
end

--- The whole file at path, or nil if it cannot be opened.
function H.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

--- The TCP ports something listens on now (from /proc/net/tcp and tcp6).
function H.listening_ports()
  local listening = {}
  for _, file in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
    for port, state in (H.read(file) or ""):gmatch("%x+:(%x%x%x%x) %x+:%x+ (%x%x)") do
      if state == "0A" then listening[tonumber(port, 16)] = true end
    end
  end
  return listening
end

--- "127.0.0.1:PORT" where a connection is refused: a privileged port
-- nothing listens on. The specs' own servers (nginx, brokers, mock
-- clusters) listen on unprivileged ports only, so none of them can take it
-- while a spec counts on the refusal (a random high port once became
-- another spec's nginx halfway through spec/ngx/operations_spec.lua). Each call gives another.
local refused_taken = {}
function H.refused_address()
  local listening = H.listening_ports()
  for port = 600, 1023 do
    if not listening[port] and not refused_taken[port] then
      refused_taken[port] = true
      return "127.0.0.1:" .. port
    end
  end
  error("no privileged port left that nothing listens on")
end

--- The project's root (the specs run from it) and the build under test
-- ($PRODUCERS_BUILD_DIR, else default) as an absolute path.
function H.dirs(default)
  local root = io.popen("pwd"):read("*l")
  local build = os.getenv("PRODUCERS_BUILD_DIR") or default
  if build:sub(1, 1) ~= "/" then build = root .. "/" .. build end
  return root, build
end

--- Runs the Lua script at path under valgrind's memcheck (definite and
-- indirect leaks count as errors; spec/support/valgrind.supp) on the
-- interpreter and build under test. Returns its output, whether valgrind
-- found nothing, its exit code, and valgrind's report.
function H.valgrind(script)
  local build = os.getenv("PRODUCERS_BUILD_DIR") or "build"
  local lua = os.getenv("PRODUCERS_LUA") or "lua5.4"
  local log = os.tmpname()
  local out, ok, code = H.sh(("LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH=%s valgrind --quiet "
    .. "--keep-debuginfo=yes --leak-check=full --errors-for-leak-kinds=definite,indirect "
    .. "--suppressions=spec/support/valgrind.supp --error-exitcode=99 --log-file=%s "
    .. "%s %s")
    :format(shell_quote(build .. "/?.so;;"), log, lua, shell_quote(script)))
  local report = assert(io.open(log)):read("*a")
  os.remove(log)
  return out, ok, code, report
end

--- Runs a Lua chunk in a fresh interpreter (the one the specs run on)
-- with the module on its paths, killed after timeout seconds if given.
-- Returns its output (stdout and stderr) and whether it exited with
-- status 0.
function H.run_lua(code, timeout)
  local build = os.getenv("PRODUCERS_BUILD_DIR") or "build"
  local lua = os.getenv("PRODUCERS_LUA") or "lua5.4"
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  local out, ok = H.sh(("%sLUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH=%s %s %s")
    :format(timeout and ("timeout %d env "):format(timeout) or "", shell_quote(build .. "/?.so;;"), lua, path))
  os.remove(path)
  return out, ok
end

return H
