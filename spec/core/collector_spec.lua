-- Defects that spec/core/random_spec.lua found under LuaJIT, each reduced
-- to a reproducer. On LuaJIT and Lua 5.1 the collector runs inside
-- lua_pushlstring *before* the bytes are copied, so a finalizer may run
-- between a C function filling a buffer and Lua copying it.
local H = require("helpers")

describe("LuaJIT regressions", function()
  -- spec/core/random_spec.lua seeds 3431 and 112 (LuaJIT): a report's value had the
  -- length of its message's JSON and another message's JSON at its head.
  -- lua-cjson encodes into one buffer per instance, and every producer
  -- with json = "lua-cjson" shares the library's instance: a finalizer
  -- that produced with it while lua_pushlstring was about to copy that
  -- buffer overwrote the bytes being copied. Run in a fresh interpreter:
  -- with busted's larger heap the collector reaches its finalize phase
  -- too seldom to hit the window.
  it("json = \"lua-cjson\": a finalizer that encodes while produce encodes leaves the value intact", function()
    local out, ok = H.run_lua([=[
      local producers = require("producers")
      local m = producers.mock_cluster(1)
      local expected = require("cjson").new()
      expected.encode_keep_buffer(false)       -- a buffer of its own per call
      local on_collect = require("support.finalizer")
      -- a table of 512 numbers from one constructor: the collector checks
      -- its debt before that allocation, not after, so the next check is
      -- the one lua_pushlstring makes inside lua-cjson's encode
      local numbers = {}
      for i = 1, 512 do numbers[i] = i end
      local make_pad = (loadstring or load)("return { " .. table.concat(numbers, ", ") .. " }")

      local wants, reported, wrong, first = {}, 0, 0, "none"
      local outer = producers.kafka.new{ bootstrap_servers = m:bootstraps(), json = "lua-cjson",
        on_delivery = function(err, r)
          reported = reported + 1
          if err or r.value ~= wants[r.key] then
            wrong = wrong + 1
            if wrong == 1 then
              first = ("%s: %s, %d bytes, want %d: %q"):format(r.key, tostring(err),
                #(r.value or ""), #wants[r.key], (r.value or ""):sub(1, 40))
            end
          end
        end }
      local inner = producers.kafka.new{ bootstrap_servers = m:bootstraps(), json = "lua-cjson" }
      local small = { string.rep("i", 100) }
      local function produce_inner()
        if not inner:is_closed() then inner:produce("reentry", nil, small) end
      end
      local n = 2000
      collectgarbage("setpause", 100)
      collectgarbage("setstepmul", 1000)
      for i = 1, n do
        local key, value = "m" .. i, { id = i, blob = string.rep("B", 2000) }
        wants[key] = expected.encode(value)
        for _ = 1, 3 do on_collect(produce_inner) end
        local pad = make_pad()
        assert(outer:produce("reentry", key, value))
        pad = nil
      end
      collectgarbage("setpause", 200)
      collectgarbage("setstepmul", 200)
      collectgarbage()
      collectgarbage()
      assert(outer:flush(30) and inner:flush(30))
      outer:close()
      inner:close()
      m:close()
      print(("reported %d of %d, wrong %d, first %s"):format(reported, n, wrong, first))
    ]=])
    assert.is_true(ok, out)
    assert.matches("reported 2000 of 2000, wrong 0,", out, 1, true)
  end)
  -- The builtin encoder writes into one buffer per Lua state. It looked
  -- up OpenResty's cjson markers (array_mt...) for every table with a
  -- metatable by pushing the names as new strings: the collector could
  -- run there, and a finalizer that produced a table reset that buffer
  -- under the value being written (its JSON then had the finalizer's at
  -- its head, then the rest of its own). Under LuaJIT: half of 2000
  -- values wrong before (this timing is tuned to LuaJIT and Lua 5.1; 5.4
  -- may collect there too, but passes this case either way).
  it("builtin json: a finalizer that encodes while produce encodes a table with a metatable leaves the value intact", function()
    local out, ok = H.run_lua([=[
      local producers = require("producers")
      local m = producers.mock_cluster(1)
      local expected = require("cjson").new()
      expected.encode_keep_buffer(false)
      local on_collect = require("support.finalizer")
      local numbers = {}
      for i = 1, 512 do numbers[i] = i end
      local make_pad = (loadstring or load)("return { " .. table.concat(numbers, ", ") .. " }")

      local wants, reported, wrong, first = {}, 0, 0, "none"
      local outer = producers.kafka.new{ bootstrap_servers = m:bootstraps(),
        on_delivery = function(err, r)
          reported = reported + 1
          if err or r.value ~= wants[r.key] then
            wrong = wrong + 1
            if wrong == 1 then
              first = ("%s: %s, %d bytes, want %d: %q"):format(r.key, tostring(err),
                #(r.value or ""), #wants[r.key], (r.value or ""):sub(1, 40))
            end
          end
        end }
      local inner = producers.kafka.new{ bootstrap_servers = m:bootstraps() }
      local small = { string.rep("i", 100) }
      local function produce_inner()
        if not inner:is_closed() then inner:produce("reentry", nil, small) end
      end
      local mt = {}
      local n = 2000
      collectgarbage("setpause", 100)
      collectgarbage("setstepmul", 1000)
      for i = 1, n do
        local key = "m" .. i
        local value = { id = i, object = setmetatable({ x = 1 }, mt), blob = string.rep("B", 200) }
        wants[key] = expected.encode(value)
        for _ = 1, 3 do on_collect(produce_inner) end
        local pad = make_pad()
        assert(outer:produce("reentry", key, value))
        pad = nil
      end
      collectgarbage("setpause", 200)
      collectgarbage("setstepmul", 200)
      collectgarbage()
      collectgarbage()
      assert(outer:flush(30) and inner:flush(30))
      outer:close()
      inner:close()
      m:close()
      print(("reported %d of %d, wrong %d, first %s"):format(reported, n, wrong, first))
    ]=])
    assert.is_true(ok, out)
    assert.matches("reported 2000 of 2000, wrong 0,", out, 1, true)
  end)

  -- spec/core/random_spec.lua's hang under LuaJIT (1 run in 10 to 20; 100% CPU, flat RSS,
  -- gdb in trace_exit_cp and lj_snap_restore) is LuaJIT's own, reproduced
  -- here without the library: a pairs() loop compiled as a root trace
  -- (ITERN) whose loop end is first reached inside a finalizer never
  -- ends. During __gc lj_trace_exit starts no side trace (HOOK_GC, the
  -- collector in its finalize phase) and resumes the interpreter at the
  -- trace's JLOOP, which re-enters the trace, which exits again. Pending
  -- while the LuaJIT under test has the bug (luajit2 2.1-20230119 has).
  it("LuaJIT: a compiled pairs() loop that first ends inside a finalizer returns", function()
    if not jit then return pending("LuaJIT only") end
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write([=[
      local function count(t, stop)
        local n = 0
        for _ in pairs(t) do
          n = n + 1
          if n == stop then break end
        end
        return n
      end
      local big = {}
      for i = 1, 200 do big["k" .. i] = i end
      assert(count(big, 150) == 150)      -- compiled; its loop end not reached
      local proxy = newproxy(true)
      getmetatable(proxy).__gc = function() assert(count({ a = 1, b = 2 }) == 2) end
      proxy = nil
      collectgarbage()
      print("returned")
    ]=])
    f:close()
    local out, _, code = H.sh(("timeout 5 %s %s"):format(os.getenv("PRODUCERS_LUA") or "luajit", path))
    os.remove(path)
    if code == 124 then
      return pending(jit.version .. " hangs there (LuaJIT's bug, not the library's); spec/core/random_spec.lua runs with the compiler off for it")
    end
    assert.matches("returned", out, 1, true)
  end)
end)
