-- A Lua program run as a child process that a spec sends signals to
-- (spec/core/signals_spec.lua, spec/tools/cat_spec.lua,
-- spec/integration/90-cat_spec.lua):
--
--   local child = require("support.child")
--   local c = child.start{ code = "...", args = {...}, stdin = "seq 1 100000" }
--   c:wait_output("ready")           -- its stdout or stderr holds the text
--   c:kill("TERM")
--   local status, seconds = c:wait(10)   -- exit status (128 + n when a signal ended it)
--   c.stdout(), c.stderr()
--
-- It runs on the interpreter the specs run on (PRODUCERS_LUA) with the
-- module of the build under test on its paths. Its standard input is the
-- output of opts.stdin (a shell command), else a FIFO the spec holds
-- open, so that reads block until c:close_stdin(). The shell that starts
-- it writes its process id first and its exit status last, so the
-- status is known on every Lua (io.popen's close does not give it on
-- LuaJIT) and a signal goes to the program itself, not to a shell.
local H = require("helpers")
local system = require("system")

local q = H.shell_quote
local M = {}

local _, build = H.dirs("build")

M.now = system.monotime
M.sleep = system.sleep

local function slurp(path)
  return H.read(path) or ""
end

local Child = {}
Child.__index = Child

--- Starts a child. opts: code (a Lua chunk) or script (a path), args (a
-- list of strings), stdin (a shell command whose output is its input;
-- default: a FIFO held open by the spec), env (a table of variables), lua
-- (the interpreter's command line, a shell word list; default PRODUCERS_LUA).
function M.start(opts)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. q(dir)))
  local self = setmetatable({ dir = dir }, Child)
  local script = opts.script
  if opts.code then
    script = dir .. "/child.lua"
    local f = assert(io.open(script, "w"))
    f:write(opts.code)
    f:close()
  end
  local lua = opts.lua or os.getenv("PRODUCERS_LUA") or "lua5.4"
  local args = {}
  for _, a in ipairs(opts.args or {}) do args[#args + 1] = q(a) end
  local env = { ("LUA_PATH=%s"):format(q("lua/?.lua;lua/?/init.lua;spec/?.lua;;")),
                ("LUA_CPATH=%s"):format(q(build .. "/?.so;;")) }
  for k, v in pairs(opts.env or {}) do env[#env + 1] = k .. "=" .. q(v) end
  local program = ("echo $$ > %s/pid; exec env %s %s %s %s"):format(q(dir), table.concat(env, " "),
    lua, q(script), table.concat(args, " "))
  local input
  if opts.stdin then
    input = opts.stdin .. " | "
  else
    assert(os.execute("mkfifo " .. q(dir .. "/in")))
  end
  local cmd = ("(%ssh -c %s%s > %s/out 2> %s/err; echo $? > %s/status.tmp; mv %s/status.tmp %s/status) &")
    :format(input or "", q(program), input and "" or (" < " .. q(dir .. "/in")),
            q(dir), q(dir), q(dir), q(dir), q(dir))
  assert(os.execute("{ " .. cmd .. " } >/dev/null 2>&1"))
  if not input then
    self.stdin = assert(io.open(dir .. "/in", "w"))   -- blocks until the child opens it
    self.stdin:setvbuf("no")
  end
  assert(self:wait_for(function() return tonumber(slurp(dir .. "/pid"):match("%d+")) end, 10),
    "the child did not start")
  self.pid = tonumber(slurp(dir .. "/pid"):match("%d+"))
  return self
end

function Child:stdout() return slurp(self.dir .. "/out") end
function Child:stderr() return slurp(self.dir .. "/err") end
function Child:output() return self:stdout() .. self:stderr() end

--- Calls cond() every 20 ms until it returns a truthy value (returned)
-- or timeout seconds pass (false).
function Child:wait_for(cond, timeout)
  local deadline = M.now() + (timeout or 10)
  repeat
    local v = cond()
    if v then return v end
    M.sleep(0.02)
  until M.now() > deadline
  return cond() or false
end

--- Waits until its output holds text (plain); raises with the output if
-- it does not within timeout seconds or the child ended first.
function Child:wait_output(text, timeout)
  local ok = self:wait_for(function()
    return self:output():find(text, 1, true) or self:exited()
  end, timeout or 20)
  if not (ok and self:output():find(text, 1, true)) then
    error(("the child's output has no %q (exit status %s):\n%s"):format(text,
      tostring(self:exited()), self:output()), 2)
  end
end

--- Bytes it has read so far (Linux's /proc/PID/io rchar): how far it got
-- through its input.
function Child:bytes_read()
  return tonumber(slurp("/proc/" .. self.pid .. "/io"):match("rchar:%s*(%d+)")) or 0
end

--- Its signal handlers (/proc/PID/status SigCgt) for signals 1 to 31, as
-- a set of numbers. (glibc's threads install their own for 32 and 33.)
function Child:handlers()
  return M.handlers(slurp("/proc/" .. self.pid .. "/status"))
end

function M.handlers(status)
  local hex = status:match("SigCgt:%s*(%x+)")
  local set = {}
  local bits = tonumber(hex:sub(-8), 16)
  for n = 1, 31 do
    if math.floor(bits / 2 ^ (n - 1)) % 2 == 1 then set[n] = true end
  end
  return set
end

--- Waits until its main thread sleeps in the kernel in a wait whose name
-- (/proc/PID/wchan) holds pattern: "pipe" for a read of its input,
-- "futex" for librdkafka's queue. A running thread's wchan reads "0": it
-- is read again until the wait comes. Where the kernel hides every name
-- ("0" or nothing for 5 s), waits 0.5 s instead. Raises if it does not
-- wait within timeout seconds. (It once took a first "0", from a child
-- still running on a loaded machine, for a hidden name: the signal then
-- came before the child's flush began to watch for it.)
function Child:wait_blocked(pattern, timeout)
  local path = "/proc/" .. self.pid .. "/wchan"
  local t0, named, last = M.now(), false, ""
  local ok = self:wait_for(function()
    last = slurp(path)
    if last ~= "" and last ~= "0" then named = true end
    return last:find(pattern) or self:exited() or (not named and M.now() - t0 > 5)
  end, timeout or 20)
  if not named then
    M.sleep(0.5)
    return
  end
  if not (ok and last:find(pattern)) then
    error(("the child never waited in %q (wchan %q, exit status %s):\n%s"):format(pattern, last,
      tostring(self:exited()), self:output()), 2)
  end
end

--- Sends it a signal ("INT", "TERM", ...); returns the time it was sent.
function Child:kill(sig)
  local t = M.now()
  assert(os.execute(("kill -%s %d"):format(sig, self.pid)))
  return t
end

--- Its exit status if it has ended, else nil.
function Child:exited()
  return tonumber(slurp(self.dir .. "/status"):match("%d+"))
end

--- Waits up to timeout seconds for it to end: its exit status (nil if
-- it still runs), and the seconds waited.
function Child:wait(timeout)
  local t0 = M.now()
  local status = self:wait_for(function() return self:exited() end, timeout or 30)
  return status or nil, M.now() - t0
end

--- Writes data to its input (the FIFO), through a second opening that
-- also reads: never blocks, never raises SIGPIPE, should it have ended.
-- Then waits until it has read them (its rchar grew by as much).
function Child:write(data)
  local path = self.dir .. "/data"
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  local before = self:bytes_read()
  assert(os.execute(("cat %s 1<> %s"):format(q(path), q(self.dir .. "/in"))))
  assert(self:wait_for(function() return self:bytes_read() >= before + #data or self:exited() end, 20),
    "the child did not read its input: " .. self:output())
end

function Child:close_stdin()
  if self.stdin then
    self.stdin:close()
    self.stdin = nil
  end
end

--- Ends it if it still runs (SIGKILL) and removes its folder.
function Child:cleanup()
  self:close_stdin()
  if self.pid and not self:exited() then
    os.execute(("kill -KILL %d 2>/dev/null"):format(self.pid))
    self:wait(5)
  end
  os.execute("rm -rf " .. q(self.dir))
end

return M
