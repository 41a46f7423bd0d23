-- Randomized API sequences on producers.nats (issue #23), the Kafka
-- backend's randomized test itself run against NATS: the driver,
-- re-entries and ledger of spec/core/random_spec.lua (support/random_*)
-- on a real nats-server with JetStream (servers of its own: N.own(5)),
-- whose faults are the server's own: down for a while, up, restarted
-- (support/random_nats.lua). Then every producer is closed and the
-- invariants are checked: each accepted message got exactly one report,
-- each refused one none; only expected errors were raised; callbacks
-- nested to a bounded depth; registry refs and the Lua heap are back to
-- where they were; and, NATS's own, every delivered report names a
-- stream sequence no other report named, which the stream holds (read
-- back with nats-py) under the subject produced to.
--
-- Replay a run: PRODUCERS_SEED=<seed> (printed first and in every
-- assertion message). PRODUCERS_RANDOM_SECONDS sets the driving time
-- (default 6); PRODUCERS_RANDOM_TRACE=1 writes every action to stderr.
-- When acks, reconnects and reports arrive depends on timing, so a seed
-- replays the driver's choices only.
local producers = require("producers")
local N = require("support.nats")
local R = require("support.random_run")
local NatsWorld = require("support.random_nats")

local describe_nats = producers.nats.available and describe or pending

local DEPTH_LIMIT = 12
local HEAP_SLACK_KB = 256
local ERROR_LENGTH_LIMIT = 16384
local SEED = tonumber(os.getenv("PRODUCERS_SEED") or "") or R.fresh_seed()
local SECONDS = tonumber(os.getenv("PRODUCERS_RANDOM_SECONDS") or "") or 6
print(("spec/nats/random_world: seed %d (replay with PRODUCERS_SEED=%d)"):format(SEED, SEED))

-- One producer of each encoder, used and closed, before the baseline
-- (R.warm_up, as spec/core/random's).
local function warm_up(url)
  R.warm_up(function(opts)
    opts.servers = url
    return producers.nats.new(opts)
  end)
end

-- R.settled until the heap stops shrinking: the producers dropped
-- unclosed and the finalizers' garbage free more at each cycle (on
-- LuaJIT a run's heap took 5 to 8 full collections to come back).
local function settled()
  local last = R.settled()
  for _ = 1, 12 do
    local now = R.settled()
    if now.heap_kb > last.heap_kb - 1 then return now end
    last = now
  end
  return last
end

-- Each delivered report's sequence against the stream as nats-py reads
-- it: the problems found, and how many sequences were checked.
local function stream_problems(stream, acks)
  local stored, problems, checked = {}, {}, 0
  for _, rec in ipairs(N.read(stream, { timeout = 20 })) do stored[rec.seq] = rec.subject end
  for seq, ack in pairs(acks[stream] or {}) do
    checked = checked + 1
    if stored[seq] ~= ack.subject and #problems < 10 then
      problems[#problems + 1] = ("%s #%d: reported delivered to %s (%s), stored %s"):format(stream, seq,
        ack.subject, ack.when, tostring(stored[seq]))
    end
  end
  for name in pairs(acks) do
    if name ~= stream and name ~= NatsWorld.FULL_STREAM then
      problems[#problems + 1] = "a delivered report names stream " .. tostring(name)
    end
  end
  return problems, checked
end

describe_nats("random API sequences on producers.nats (seed " .. SEED .. ") #nats_unit", function()
  local before, after, result, stream_check

  lazy_setup(function()
    if jit then jit.off(); jit.flush() end    -- as spec/core/random_spec.lua, for the same reason
    N.own(5)
    local env = N.start()
    local stream = N.stream("RANDOM")
    N.create_stream(stream, NatsWorld.SUBJECTS)
    N.create_stream(NatsWorld.FULL_STREAM, { NatsWorld.FULL }, { max_msgs = 20, discard = "new" })
    warm_up(env.NATS_URL)
    before = settled()
    local world = NatsWorld.new(env.NATS_URL, SEED, os.getenv("PRODUCERS_RANDOM_TRACE") == "1")
    result = R.run(world, SECONDS)
    -- read back before the baseline's check: the acks seen are the test's, not the library's
    local problems, checked = stream_problems(stream, world.acks)
    stream_check = { problems = problems, checked = checked }
    world = nil
    after = settled()
    print(("spec/nats/random_world: seed %d: %s; depth %d; refs %d -> %d; heap %.0f -> %.0f KiB")
      :format(SEED, result.summary, result.max_depth, before.refs, after.refs, before.heap_kb, after.heap_kb))
  end)

  lazy_teardown(function()
    N.stop()
    if jit then jit.on() end
  end)

  it("give every accepted message exactly one report with its fields, a refused one none", N.with_logs(function()
    assert(result.problem_counts.reports == 0, R.report(SEED, result, "reports"))
  end))

  it("raise only the errors a hostile call expects, and short ones", N.with_logs(function()
    assert(result.problem_counts.errors == 0, R.report(SEED, result, "errors"))
    assert(result.max_error_length <= ERROR_LENGTH_LIMIT,
      ("seed %d: an error of %d bytes"):format(SEED, result.max_error_length))
  end))

  it("nest callbacks no deeper than their own re-entries", function()
    assert(result.max_depth <= DEPTH_LIMIT, ("seed %d: callbacks nested %d deep (limit %d)")
      :format(SEED, result.max_depth, DEPTH_LIMIT))
  end)

  it("leave no registry ref behind and give the Lua heap back", function()
    assert(after.refs <= before.refs,
      ("seed %d: %d registry refs before, %d after (%s)"):format(SEED, before.refs, after.refs, result.summary))
    assert(after.heap_kb <= before.heap_kb + HEAP_SLACK_KB, ("seed %d: Lua heap %.0f KiB before, %.0f KiB after")
      :format(SEED, before.heap_kb, after.heap_kb))
  end)

  it("name in each delivered report a sequence the stream holds under the subject produced to", N.with_logs(function()
    assert(#stream_check.problems == 0, ("seed %d: %s"):format(SEED, table.concat(stream_check.problems, "\n  ")))
    assert(stream_check.checked > 0, ("seed %d: no delivered report named a sequence (%s)"):format(SEED, result.summary))
  end))
end)
