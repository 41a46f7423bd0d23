-- on_collect(fn): an object whose finalizer calls fn, for specs that run
-- Lua inside the collector: a table with __gc on Lua 5.2+, a userdata
-- from newproxy on 5.1 and LuaJIT (whose tables have no __gc). Also for
-- child interpreters (H.run_lua puts spec/ on their path).
return function(fn)
  if newproxy then
    local u = newproxy(true)
    getmetatable(u).__gc = fn
    return u
  end
  return setmetatable({}, { __gc = fn })
end
