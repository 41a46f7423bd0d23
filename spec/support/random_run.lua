-- What the randomized API specs share (spec/core/random_spec.lua on the
-- mock cluster, spec/nats/random_world_spec.lua on a nats-server): the seed,
-- the registry and heap baseline, a world driven and closed, the failure
-- message that names the seed to replay.
local M = {}

--- A seed from /dev/urandom, or the clock.
function M.fresh_seed()
  local f = io.open("/dev/urandom", "rb")
  if f then
    local b = f:read(4)
    f:close()
    return ((b:byte(1) * 256 + b:byte(2)) * 256 + b:byte(3)) * 128 + b:byte(4) % 128
  end
  return os.time()
end

--- Registry refs in use: integer keys holding anything but a number
-- (luaL_unref's free list threads numbers through the free slots).
function M.registry_refs()
  local n = 0
  for k, v in pairs(debug.getregistry()) do
    if type(k) == "number" and type(v) ~= "number" then n = n + 1 end
  end
  return n
end

--- The registry refs and the Lua heap once garbage is gone (and, on
-- LuaJIT, the compiled traces, which live on the heap too).
function M.settled()
  if jit then jit.flush() end
  collectgarbage()
  collectgarbage()
  return { refs = M.registry_refs(), heap_kb = collectgarbage("count") }
end

--- One producer of each encoder, used and closed: what the library
-- makes once per Lua state (lua-cjson's instance, cached functions) is
-- made before the baseline. new(opts) makes the backend's producer from
-- the options given (json, logger, on_delivery).
function M.warm_up(new)
  for _, json in ipairs{ "builtin", "lua-cjson" } do
    local p = assert(new{ json = json, logger = function() end, on_delivery = function() end })
    assert(p:produce("random-a", "k", { warm = true }, { on_delivery = function(_, r) end, headers = { h = "v" } }))
    assert(p:produce("random-a", "k", string.rep("w", 2048)))
    assert(p:flush(10))
    p:close()
  end
end

--- Drives world for seconds and closes it; returns what the checks
-- need, so that the world and its ledger can be collected.
function M.run(world, seconds)
  local pause = collectgarbage("setpause", 200)
  world:drive(os.time() + seconds)
  world:finish()
  collectgarbage("setpause", pause)
  local ledger = world.ledger
  return { summary = ledger:summary(), problems = ledger.problems, problem_counts = ledger.problem_counts,
           max_depth = world.max_depth, max_error_length = ledger.max_error_length,
           producers = #world.history }
end

--- A failure message for kind's problems, starting with the seed to replay.
function M.report(seed, result, kind)
  return ("seed %d: %d %s problem(s) (first ones below)\n  %s\n  (%s; %d producers)")
    :format(seed, result.problem_counts[kind], kind, table.concat(result.problems[kind], "\n  "),
            result.summary, result.producers)
end

return M
