-- A stub `ngx` for specs of producers.ngx and producers.resty_kafka outside
-- nginx (spec/ngx/*_spec.lua): timers the spec fires
-- (S.timers from ngx.timer.every, S.zero from ngx.timer.at), a semaphore
-- that yields the coroutine, phases the spec sets, log lines in S.lines.
-- local S = require("support.ngx_stub")()  -- fresh stub and modules
local system = require("system")
local unpack = table.unpack or unpack

-- Forgets producers.ngx, its parts (producers.ngx.*) and resty_kafka, so
-- the next require loads them afresh: a new worker, with the current stub
-- cached in their locals.
local function unload()
  for name in pairs(package.loaded) do
    if name == "producers.ngx" or name:find("^producers%.ngx%.") or name == "producers.resty_kafka" then
      package.loaded[name] = nil
    end
  end
end

-- A fresh stub and fresh modules for each test.
local function stub()
  local S = { phase = "init_worker", pid = 100, exiting = false, timers = {}, zero = {}, lines = {}, t = 0 }
  local dict = require("support.shared_dict").new()
  _G.ngx = {
    ERR = 4, WARN = 5, INFO = 7, DEBUG = 8,
    log = function(level, ...)
      local parts = {}
      for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
      S.lines[#S.lines + 1] = { level, table.concat(parts) }
    end,
    shared = { producers = dict },
    worker = { pid = function() return S.pid end, exiting = function() return S.exiting end },
    timer = {
      every = function(_, fn, ...) S.timers[#S.timers + 1] = { fn = fn, args = { ... } } return true end,
      at = function(_, fn, ...) S.zero[#S.zero + 1] = { fn = fn, args = { ... } } return true end,
    },
    get_phase = function() return S.phase end,
    now = function() return S.t end,
    update_time = function() end,
    sleep = function() coroutine.yield("sleep") end,
  }
  package.loaded["ngx.semaphore"] = {
    new = function(n)
      local sema = { n = n }
      function sema:post(k) self.n = self.n + (k or 1) end
      function sema:wait()
        while self.n == 0 do
          if coroutine.yield("wait") == "timeout" then return nil, "timeout" end
        end
        self.n = self.n - 1
        return true
      end
      return sema
    end,
  }
  unload()
  S.dict = dict
  function S.tick(premature)
    for _, t in ipairs(S.timers) do t.fn(premature or false, unpack(t.args)) end
  end
  -- ticks (in the timer phase) until cond() or 10 s
  function S.until_(cond)
    local phase = S.phase
    S.phase = "timer"
    for _ = 1, 1000 do
      if cond() then break end
      S.tick()
      system.sleep(0.01)
    end
    S.phase = phase
    return cond()
  end
  function S.find(text)
    for _, l in ipairs(S.lines) do if l[2]:find(text, 1, true) then return l end end
  end
  function S.count(text)
    local n = 0
    for _, l in ipairs(S.lines) do if l[2]:find(text, 1, true) then n = n + 1 end end
    return n
  end
  return S
end

-- Ends the test's worker as nginx would (exit, the producers.ngx module
-- the test required, in the exit_worker phase), then removes the stub and
-- the modules.
local function leave(S, exit)
  S.phase = "exit_worker"
  exit()
  _G.ngx = nil
  unload()
end

return setmetatable({ unload = unload, leave = leave }, { __call = function(_, ...) return stub(...) end })
