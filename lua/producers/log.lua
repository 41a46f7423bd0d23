--- Loggers: where the default delivery report and the library's own
-- messages go.
--
-- A logger is a function `(level, message)`, or an object with `debug`,
-- `info`, `warn` and `error` methods (`warning` is taken for `warn`), so
-- the logging library a program already has plugs in. Levels below the
-- producer's `log_level` (default "info") are dropped before any string
-- is built; successful deliveries log at "debug", so a busy producer is
-- quiet by default.
-- @module producers.log

-- Under libproducers (a C host's producers_preload) the chunk gets a C
-- writer as its second argument: the default logger then needs no io or
-- os (sandboxed hosts open neither) and reaches the host's C log hook.
-- Otherwise it uses io and os as they are when this file loads, so a
-- script that later removes the globals keeps its logger.
local _, c_write = ...
if type(c_write) ~= "function" then c_write = nil end
local stderr = io and io.stderr
local date = os and os.date

local M = {}

--- The level names, least severe first: the C core's one list of them
-- (core.log_levels, src/core/log.c). A level's number is its place here.
M.NAMES = require("producers.core").log_levels

--- The level name -> its number (1 for debug ... 4 for error).
M.LEVELS = {}
for n, name in ipairs(M.NAMES) do M.LEVELS[name] = n end

local EXPECTED = table.concat(M.NAMES, ", ", 1, #M.NAMES - 1) .. " or " .. M.NAMES[#M.NAMES]

--- The level name as a number; raises on an unknown name.
function M.level(name)
  local n = M.LEVELS[name or "info"]
  if not n then
    error(("log_level: expected %s, got %s"):format(EXPECTED, tostring(name)), 3)
  end
  return n
end

--- The default logger: one line per message on stderr (or to the C
-- host's log hook).
function M.stderr(level, message)
  if c_write then return c_write(level, message) end
  if stderr and date then
    stderr:write(date("!%Y-%m-%dT%H:%M:%SZ"), " producers ", level:upper(), " ", message, "\n")
  end
end

local function is_callable(x)
  if type(x) == "function" then return true end
  local mt = getmetatable(x)
  return type(mt) == "table" and mt.__call ~= nil
end

--- Normalises a user's logger into a function (level, message).
function M.wrap(logger)
  if logger == nil then return M.stderr end
  if is_callable(logger) then
    return function(level, message) return logger(level, message) end
  end
  if type(logger) == "table" or type(logger) == "userdata" then
    return function(level, message)
      local method = logger[level] or (level == "warn" and logger.warning)
      if method then return method(logger, message) end
    end
  end
  error("logger: expected a function or an object with debug/info/warn/error methods, got "
        .. type(logger), 3)
end

M.is_callable = is_callable

return M
