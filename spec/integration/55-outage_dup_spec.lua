-- Every broker of the 3-node cluster down at once, for longer than
-- message.timeout.ms, under a steady stream with the library's defaults
-- (enable.idempotence=true, acks=all): what the reports say against what
-- an independent client (kcat) reads back (issue #20: a 90 s outage with
-- message.timeout.ms=30000 wrote 2,108 messages twice and left 126 that
-- were reported _MSG_TIMED_OUT on the broker). docs/reliability.md,
-- "Duplicates after an outage", explains the numbers this prints.
--
-- Pinned: one report per accepted message; every message reported
-- delivered is on the broker; every message reported failed yet found on
-- the broker was reported possibly_persisted = true (so a failed report
-- with possibly_persisted = false is not on the broker). Copies are
-- counted and printed. The outage is scaled down (message.timeout.ms 4 s,
-- outage 9 s) to keep the run under a minute.
--
-- PRODUCERS_OUTAGE=freeze stops the brokers (SIGSTOP, connections stay
-- open: requests time out in flight) instead of killing them (SIGKILL);
-- PRODUCERS_OUTAGE_TIMEOUT_MS and PRODUCERS_OUTAGE_SECONDS scale it.
local producers = require("producers")
local K = require("integration.kafka_helpers")

local RATE = 1000                     -- messages per second
local PARTITIONS = 6
local TIMEOUT_MS = tonumber(os.getenv("PRODUCERS_OUTAGE_TIMEOUT_MS")) or 4000   -- message.timeout.ms
local OUTAGE = tonumber(os.getenv("PRODUCERS_OUTAGE_SECONDS")) or 9
local BEFORE, AFTER = 3, 3            -- s: streaming before and after the outage
local MODE = os.getenv("PRODUCERS_OUTAGE") or "kill"

local function pid_of(i)
  local f = io.open(("%s/pids/node-%d.pid"):format(K.dir, i))
  local pid = f and f:read("*n")
  if f then f:close() end
  return pid
end

K.describe_cluster("every broker down longer than message.timeout.ms, idempotence on #integration #failover", 3, function()
  setup(function() K.broker_env() end)
  teardown(function()
    for i = 1, 3 do
      if pid_of(i) then os.execute("kill -CONT " .. pid_of(i) .. " 2>/dev/null") end
    end
    for i = 1, 3 do
      if not K.running(i) then K.broker("start-node", i) end
    end
  end)

  K.it("reports every message once; a failed one on the broker was reported possibly_persisted", function()
    local env = K.broker_env()
    local topic = K.topic("outage")
    K.create_topic(topic, PARTITIONS, 3)
    local log = K.recorder()
    local reports = {}               -- seq -> report
    local n_reports = 0
    local p = producers.kafka.new{
      bootstrap_servers = env.KAFKA_BOOTSTRAP, logger = log.fn, serve_on_produce = false,
      config = { ["broker.address.family"] = "v4", ["message.timeout.ms"] = TIMEOUT_MS,
                 ["linger.ms"] = 5 },
      on_delivery = function(err, r)
        local seq = tonumber(r.value)
        assert(reports[seq] == nil, "two reports for " .. r.value)
        reports[seq] = { err = err, error = r.error, possibly_persisted = r.possibly_persisted }
        n_reports = n_reports + 1
      end,
    }
    assert.is_true(producers.kafka.config({ bootstrap_servers = "x" })["enable.idempotence"])

    local produced, refused = 0, 0
    local function stream(seconds)
      local t0, n0 = K.now(), produced
      while K.now() - t0 < seconds do
        local target = n0 + math.floor((K.now() - t0) * RATE)
        while produced < target do
          produced = produced + 1
          local ok = p:produce(topic, tostring(produced % 60), tostring(produced))
          if not ok then refused = refused + 1 end
        end
        p:poll(0.005)
      end
    end

    stream(BEFORE)
    local t_down = K.now()
    if MODE == "freeze" then
      for i = 1, 3 do assert(os.execute("kill -STOP " .. pid_of(i))) end
    else
      for i = 1, 3 do K.must_broker("kill-node", i) end
    end
    stream(OUTAGE)
    -- back: all three at once (a node serves once the controllers have
    -- a quorum), the stream going on meanwhile
    local done = {}
    if MODE == "freeze" then
      for i = 1, 3 do assert(os.execute("kill -CONT " .. pid_of(i))) end
    else
      for i = 1, 3 do
        done[i] = os.tmpname()
        os.remove(done[i])
        os.execute(("(%s start-node %d >/dev/null 2>&1; echo $? >%s) </dev/null >/dev/null 2>&1 &")
          :format(K.q(K.broker_sh()), i, K.q(done[i])))
      end
    end
    local t_up = K.now()
    local function all_back()
      for i = 1, 3 do
        local f = done[i] and io.open(done[i])
        if done[i] and not f then return false end
        if f then f:close() end
      end
      return true
    end
    while not all_back() and K.now() - t_up < 90 do stream(0.5) end
    assert.is_true(all_back(), "the nodes did not come back within 90 s")
    for i = 1, 3 do if done[i] then os.remove(done[i]) end end
    local t_back = K.now()
    stream(AFTER)
    assert.is_true(p:flush(TIMEOUT_MS / 1000 + 30), ("%d of %d reports"):format(n_reports, produced))
    p:close()

    -- what the broker has: each seq, how many times
    local records = K.kcat_read(topic, "plaintext", 120)
    local copies = {}
    for _, r in ipairs(records) do
      local seq = tonumber(r.value)
      copies[seq] = (copies[seq] or 0) + 1
    end

    local accepted = produced - refused
    local delivered, failed, failed_pp, failed_not_pp = 0, 0, 0, 0
    local dup_delivered, dup_failed = 0, 0
    local failed_on_broker, failed_pp_on_broker = 0, 0
    local lost, written_not_pp = {}, {}
    for seq, r in pairs(reports) do
      local n = copies[seq] or 0
      if not r.err then
        delivered = delivered + 1
        if n == 0 then lost[#lost + 1] = seq end
        if n > 1 then dup_delivered = dup_delivered + 1 end
      else
        failed = failed + 1
        if r.possibly_persisted then failed_pp = failed_pp + 1 else failed_not_pp = failed_not_pp + 1 end
        if n > 0 then
          failed_on_broker = failed_on_broker + 1
          if r.possibly_persisted then failed_pp_on_broker = failed_pp_on_broker + 1
          else written_not_pp[#written_not_pp + 1] = seq end
          if n > 1 then dup_failed = dup_failed + 1 end
        end
      end
    end
    local unknown = 0
    for seq in pairs(copies) do if not reports[seq] then unknown = unknown + 1 end end

    print(("\n  %s: %d produced (%d refused), outage %.1f s, back %.1f s later, %d reports: %d delivered, "
      .. "%d failed (%d possibly persisted); on the broker: %d records; delivered written twice or more: %d; "
      .. "failed yet on the broker: %d (%d of them possibly persisted, %d twice or more)")
      :format(MODE, produced, refused, t_up - t_down, t_back - t_up, n_reports, delivered, failed, failed_pp,
              #records, dup_delivered, failed_on_broker, failed_pp_on_broker, dup_failed))

    assert.equal(accepted, n_reports)
    assert.is_true(failed > 0, "nothing timed out: the outage was too short to test anything")
    assert.equal(0, unknown)
    assert.same({}, lost)                    -- delivered means on the broker
    assert.same({}, written_not_pp)          -- on the broker though reported failed: said possibly_persisted
    assert.is_nil(log.find("^fatal error"), log.text())
  end)
end)
