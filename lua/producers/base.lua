--- The producer interface every backend implements.
--
-- A backend is a class table with `new(opts)` whose instances have
-- `produce`, `poll`, `flush` and `close` with the signatures below;
-- `producers.register(kind, class)` adds one. `producers.kafka` (in C) and
-- `producers.memory` (in Lua) implement it.
--
--   p:produce(topic, key, value [, opts]) --> true | nil, message, code, error object
--   p:poll([timeout_s [, max_reports]])   --> reports served
--   p:flush([timeout_s])                  --> true | nil, "timed out", "_TIMED_OUT", error object (err.queued: still queued)
--   p:close([timeout_s])
-- @classmod producers.BaseProducer

local BaseProducer = {}
BaseProducer.__index = BaseProducer
BaseProducer.METHODS = { "produce", "poll", "flush", "close" }

local function abstract(name)
  return function(self)
    error(("%s: %s is not implemented"):format(tostring(self), name), 2)
  end
end

for _, name in ipairs(BaseProducer.METHODS) do
  BaseProducer[name] = abstract(name)
end

--- A new class that inherits the interface. Instances get `__index`,
-- `__close` (Lua 5.4: `local p <close> = ...`) and `__tostring`.
function BaseProducer.extend(kind)
  local class = setmetatable({ kind = kind }, { __index = BaseProducer })
  class.__index = class
  class.__close = function(self) self:close() end
  class.__tostring = function(self) return ("producers.%s (%s)"):format(kind, self.name or "?") end
  return class
end

--- Raises unless class has `new` and every interface method.
function BaseProducer.check(class, kind)
  if type(class) ~= "table" then
    error(("register: class for '%s' must be a table, got %s"):format(kind, type(class)), 3)
  end
  if type(class.new) ~= "function" then
    error(("register: class for '%s' has no new function"):format(kind), 3)
  end
  for _, name in ipairs(BaseProducer.METHODS) do
    local f = class[name]
    if type(f) ~= "function" or f == BaseProducer[name] then
      error(("register: class for '%s' does not implement %s"):format(kind, name), 3)
    end
  end
  return class
end

return BaseProducer
