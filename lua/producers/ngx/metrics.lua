--- producers.ngx's counters for every worker, in a lua_shared_dict
-- (init's shared_dict): each worker adds what changed since its last
-- push under "<name>:<counter>", and records what it holds in 'queued'
-- under "<name>:held:<pid>:<n>", so that a worker that died without
-- closing has its messages moved to 'unreported' by the next worker to
-- start (fold_dead).
-- @module producers.ngx.metrics

local ngx = ngx
local ngx_log, ERR, WARN = ngx.log, ngx.ERR, ngx.WARN
local ipairs, tonumber, pcall, require, io = ipairs, tonumber, pcall, require, io

local D = {}

--- The counters, as metrics() returns them.
D.NAMES = { "delivered", "failed", "purged", "queued", "unreported" }
local PUSHED = { "delivered", "failed", "purged", "queued", "unreported" }   -- what a worker adds

-- kill(pid, 0) through LuaJIT's ffi (nginx's runtime), else /proc
local ffi_kill
do
  local ok, ffi = pcall(require, "ffi")
  if ok then
    pcall(ffi.cdef, "int kill(int pid, int sig);")
    ffi_kill = function(pid)
      if ffi.C.kill(pid, 0) == 0 then return true end
      return ffi.errno() ~= 3      -- ESRCH: no such process (EPERM: someone else's, alive)
    end
  end
end

--- Whether process pid exists (a dead worker's keys are folded, below).
-- Unknown (no ffi, no /proc) counts as alive: nothing is folded.
function D.alive(pid)
  if ffi_kill then return ffi_kill(pid) end
  local f = io.open("/proc/" .. pid .. "/stat")
  if f then f:close() return true end
  f = io.open("/proc/self/stat")     -- no /proc at all: unknown
  if f then f:close() return false end
  return true
end

--- Adds what inst's totals (inst:totals()) gained since its last push
-- (inst.pushed) to the shared dict.
function D.push(inst)
  local dict = inst.dict
  if not dict then return end
  local pushed, now = inst.pushed, inst:totals()
  local prefix = inst.name .. ":"
  for _, name in ipairs(PUSHED) do
    local d = now[name] - pushed[name]
    if d ~= 0 then
      local _, err = dict:incr(prefix .. name, d, 0)
      if err then ngx_log(WARN, "producers: metrics: ", err) end
    end
  end
  if now.queued ~= pushed.queued then
    -- what this worker holds in 'queued': folded into 'unreported' by
    -- another worker if this one dies without closing (fold_dead)
    local _, err = dict:set(inst.held_key, now.queued)
    if err then ngx_log(WARN, "producers: metrics: ", err) end
  end
  for _, name in ipairs(PUSHED) do pushed[name] = now[name] end
end

--- A worker that died without closing (kill -9, a crash) leaves its
-- messages in 'queued' for good: its key "<name>:held:<pid>:<n>" says how
-- many. A starting worker moves them to 'unreported' (their reports will
-- never come: some may have been delivered) and logs one line. One
-- worker folds each pid (the claim); a live pid (an old worker still
-- leaving after a reload) is left alone. order: this worker's instances;
-- alive(pid): whether a process exists.
function D.fold_dead(inst, order, alive)
  local dict, name = inst.dict, inst.name
  local prefix = name .. ":held:"
  local mine = {}           -- this worker's live instances' keys (a reused pid's are not)
  for _, other in ipairs(order) do
    if other.pid == inst.pid and not other.closed then mine[other.held_key or ""] = true end
  end
  for _, key in ipairs(dict:get_keys(0)) do
    local pid = key:sub(1, #prefix) == prefix and tonumber(key:sub(#prefix + 1):match("^(%d+):%d+$"))
    if pid and not mine[key] and (pid == inst.pid or not alive(pid))
        and dict:add(key .. ":folding", true, 10) then
      local held = dict:get(key) or 0
      dict:delete(key)
      if held ~= 0 then
        dict:incr(name .. ":queued", -held, 0)
        dict:incr(name .. ":unreported", held, 0)
      end
      ngx_log(held > 0 and ERR or WARN, "producers: worker ", pid, " died without closing producer '", name,
              "' with ", held, " message(s) unreported (counted in 'unreported', no longer in 'queued')")
      dict:delete(key .. ":folding")
    end
  end
end

--- The counters of the producers named name in every worker, from dict.
function D.read(name, dict)
  local out = {}
  for _, c in ipairs(D.NAMES) do out[c] = dict:get(name .. ":" .. c) or 0 end
  return out
end

return D
