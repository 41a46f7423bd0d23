-- Randomized API sequences (issue #12): a seeded, time-bounded run of
-- random calls on a few producers over a mock cluster with random faults,
-- while callbacks, loggers, json functions, finalizers and option tables
-- re-enter the API (spec/support/random_world.lua; the bookkeeping in
-- random_ledger.lua, the inputs in random_inputs.lua). Then every
-- producer is closed and the invariants are checked: each accepted
-- message got exactly one report, each refused one none; only expected
-- errors were raised; callbacks nested to a bounded depth; registry refs
-- and the Lua heap are back to where they were. The ASan build adds: no
-- sanitizer report.
--
-- Replay a run: PRODUCERS_SEED=<seed> (printed first and in every
-- assertion message). PRODUCERS_RANDOM_SECONDS sets the driving time
-- (default 20); PRODUCERS_RANDOM_TRACE=1 writes every action to stderr.
-- A seed replays the driver's choices; when reports arrive, and so what
-- the re-entering callbacks do, depends on timing.
local producers = require("producers")
local World = require("support.random_world")

local TOPICS = { ["random-a"] = 4, ["random-b"] = 2 }
local DEPTH_LIMIT = 12          -- re-entries nest only as deep as chance makes them
local HEAP_SLACK_KB = 256       -- what the Lua heap may keep after the run
local ERROR_LENGTH_LIMIT = 16384

local R = require("support.random_run")

local SEED = tonumber(os.getenv("PRODUCERS_SEED") or "") or R.fresh_seed()
local SECONDS = tonumber(os.getenv("PRODUCERS_RANDOM_SECONDS") or "") or 20
print(("spec/core/random: seed %d (replay with PRODUCERS_SEED=%d)"):format(SEED, SEED))

local settled = R.settled

-- One producer of each encoder, used and closed: what the library makes
-- once per Lua state (lua-cjson's instance, cached functions) is made
-- before the baseline.
local function warm_up(cluster)
  R.warm_up(function(opts)
    opts.bootstrap_servers = cluster:bootstraps()
    return producers.kafka.new(opts)
  end)
end

-- Drives a world for SECONDS and closes it (support/random_run.lua).
local function run(cluster)
  return R.run(World.new(cluster, TOPICS, SEED, os.getenv("PRODUCERS_RANDOM_TRACE") == "1"), SECONDS)
end

-- A failure message for kind's problems, starting with the seed to replay.
local function report(result, kind) return R.report(SEED, result, kind) end

-- LuaJIT runs this with its compiler off: the compiler has a bug of its
-- own (spec/core/collector_spec.lua: a compiled pairs() loop whose end is first reached inside
-- a finalizer never returns) that this test's finalizers met in about one
-- run in ten. The library is C: the interpreter exercises it the same.
describe("random API sequences (seed " .. SEED .. ")", function()
  local cluster, before, after, result

  setup(function()
    if jit then jit.off(); jit.flush() end
    cluster = producers.mock_cluster(3)
    for name, partitions in pairs(TOPICS) do cluster:create_topic(name, partitions, 3) end
    warm_up(cluster)
    before = settled()
    result = run(cluster)
    after = settled()
    print(("spec/core/random: seed %d: %s; depth %d; refs %d -> %d; heap %.0f -> %.0f KiB")
      :format(SEED, result.summary, result.max_depth, before.refs, after.refs, before.heap_kb, after.heap_kb))
  end)

  teardown(function()
    if cluster then cluster:close() end
    if jit then jit.on() end
  end)

  it("give every accepted message exactly one report with its fields, a refused one none", function()
    assert(result.problem_counts.reports == 0, report(result, "reports"))
  end)

  it("raise only the errors a hostile call expects, and short ones", function()
    assert(result.problem_counts.errors == 0, report(result, "errors"))
    assert(result.max_error_length <= ERROR_LENGTH_LIMIT,
      ("seed %d: an error of %d bytes"):format(SEED, result.max_error_length))
  end)

  it("nest callbacks no deeper than their own re-entries", function()
    assert(result.max_depth <= DEPTH_LIMIT,
      ("seed %d: callbacks nested %d deep (limit %d): reports served inside nested calls?")
        :format(SEED, result.max_depth, DEPTH_LIMIT))
  end)

  it("leave no registry ref behind", function()
    assert(after.refs <= before.refs,
      ("seed %d: %d registry refs before, %d after (%s)"):format(SEED, before.refs, after.refs, result.summary))
  end)

  it("give the Lua heap back", function()
    assert(after.heap_kb <= before.heap_kb + HEAP_SLACK_KB,
      ("seed %d: Lua heap %.0f KiB before, %.0f KiB after (%s)")
        :format(SEED, before.heap_kb, after.heap_kb, result.summary))
  end)
end)
