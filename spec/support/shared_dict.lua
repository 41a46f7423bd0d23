-- A stand-in for one of nginx's lua_shared_dict zones (ngx.shared.NAME)
-- in the stub ngx of specs that run producers.ngx outside nginx: the
-- calls producers.ngx makes (incr, get, set, add, delete, get_keys), on
-- a plain table `values`.
local M = {}

function M.new()
  local dict = { values = {} }
  function dict:incr(key, d, init)
    self.values[key] = (self.values[key] or init) + d
    return self.values[key]
  end
  function dict:get(key) return self.values[key] end
  function dict:set(key, v) self.values[key] = v return true end
  function dict:add(key, v)
    if self.values[key] ~= nil then return false, "exists" end
    self.values[key] = v
    return true
  end
  function dict:delete(key) self.values[key] = nil end
  function dict:get_keys()
    local keys = {}
    for k in pairs(self.values) do keys[#keys + 1] = k end
    return keys
  end
  return dict
end

return M
