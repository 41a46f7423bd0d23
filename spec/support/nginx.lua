-- What the nginx specs (spec/12, spec/integration/60) share: files, the
-- processes of a running nginx, a free port, counting lines of a log.
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
  local listening = {}
  for _, file in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
    for port, state in (H.read(file) or ""):gmatch("%x+:(%x%x%x%x) %x+:%x+ (%x%x)") do
      if state == "0A" then listening[tonumber(port, 16)] = true end
    end
  end
  for _ = 1, 100 do
    local port = math.random(20000, 32000)
    if not listening[port] then return port end
  end
  error("no free port")
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
