-- Running bin/producers-cat from the tree and reading its summary, for
-- spec/tools/cat (mock cluster) and spec/integration/90-cat (real broker).
local H = require("helpers")

local C = {}
local q = H.shell_quote
local LUA = os.getenv("PRODUCERS_LUA") or "lua5.4"
local _, BUILD = H.dirs("build")

--- Runs producers-cat with args (a string for the shell) and input (a
-- string) on its standard input; returns its output (stdout and stderr)
-- and exit status.
function C.run(args, input)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(input or "")
  f:close()
  local out, _, status = H.sh(("LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH=%s %s bin/producers-cat %s < %s")
    :format(q(BUILD .. "/?.so;;"), LUA, args, q(path)))
  os.remove(path)
  return out, status
end

--- "N lines read, N delivered, N failed" of the summary, as numbers.
function C.summary(out)
  local r, d, f = out:match("producers%-cat: ([%d,]+) lines read, ([%d,]+) delivered, ([%d,]+) failed")
  assert(r, "no summary in:\n" .. out)
  local function n(s) return tonumber((s:gsub(",", ""))) end
  return n(r), n(d), n(f)
end

--- Lines read but not sent: a signal came while the line waited for room.
function C.unsent(out)
  return tonumber((out:match("([%d,]+) not sent") or "0"):gsub(",", ""), 10)
end

return C
