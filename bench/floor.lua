-- floor.lua - what the benchmark's script costs before the library sends a
-- byte: the CPU time per message of (b)'s loop building its table, and of
-- the same loop encoding each table with the library's encoder.
--
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" lua5.4 bench/floor.lua
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build-luajit/?.so;;" luajit bench/floor.lua
--
-- (b)'s main thread does this, then hands the bytes to librdkafka, whose
-- share on the calling thread (rd_kafka_produce, serving the report) is
-- (a)'s main-thread CPU in bench/run.sh's table. bench/README.md "Where
-- the targets stand" adds them up. CPU time is os.clock() (the process;
-- nothing else runs in it here), the best of 3 runs of N messages.
local core = require("producers.core")

local N = tonumber(arg[1] or "") or 2000000
local KEY_POOL = 1000
local BASE_TS = 1700000000000

local keys = {}
for k = 0, KEY_POOL - 1 do keys[k] = "user-" .. k end

local sink      -- keeps each result alive past its iteration

local loops = {
  { "loop and key", function()
      for i = 0, N - 1 do sink = keys[i % KEY_POOL] end
    end },
  { "building the table", function()
      for i = 0, N - 1 do
        local k = i % KEY_POOL
        sink = { event = "user_signup", user_id = 10000 + k, ts = BASE_TS + k,
                 tags = { "a", "b", "c" }, ok = true }
      end
    end },
  { "building + core.encode_value", function()
      local encode = core.encode_value
      for i = 0, N - 1 do
        local k = i % KEY_POOL
        sink = encode({ event = "user_signup", user_id = 10000 + k, ts = BASE_TS + k,
                        tags = { "a", "b", "c" }, ok = true })
      end
    end },
}

print(("%s, %d messages, best of 3 (CPU us per message)"):format(jit and jit.version or _VERSION, N))
for _, loop in ipairs(loops) do
  local best = math.huge
  for _ = 1, 3 do
    collectgarbage()
    local t0 = os.clock()
    loop[2]()
    best = math.min(best, os.clock() - t0)
  end
  print(("  %-30s %.3f"):format(loop[1], best * 1e6 / N))
end
