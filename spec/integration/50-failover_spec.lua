-- Failover on a 3-node cluster: a producer with the library's defaults
-- alone (enable.idempotence=true, acks=all: docs/configuration.md, "Default
-- configuration"; nothing here sets either) streams keyed messages to a
-- topic with replication factor 3 (min.insync.replicas 2) while the
-- leader of partition 0 is killed (SIGKILL) and later restarted. Every
-- message must be delivered exactly once and in order per partition, as
-- an independent client (kcat) reads back.
--
-- Needs the 3-node cluster (scripts/integration.sh starts it for this file;
-- by hand: scripts/kafka/broker.sh start --nodes 3). Tagged #failover too, so
-- the single-node run can leave it out.
local producers = require("producers")
local K = require("integration.kafka_helpers")

local N = tonumber(os.getenv("PRODUCERS_FAILOVER_MESSAGES")) or 50000
local RATE = tonumber(os.getenv("PRODUCERS_FAILOVER_RATE")) or 2500   -- messages per second
local KILL_AT = math.floor(N / 5)     -- kill after this many messages
local KEYS = 60
local PARTITIONS = 6
local TIMEOUT_MS = 120000             -- message.timeout.ms
local QUEUE_MAX = 2000                -- queue.buffering.max.messages

K.describe_cluster("failover of a partition leader under load #integration #failover", 3, function()
  local env
  setup(function() env = K.broker_env() end)

  -- whatever happened, every node runs again afterwards
  teardown(function()
    for i = 1, 3 do
      if not K.running(i) then K.broker("start-node", i) end
    end
  end)

  K.it(("delivers %d keyed messages exactly once and in order per partition while partition 0's leader is killed and restarted"):format(N), function()
    local topic = K.topic("failover")
    K.create_topic(topic, PARTITIONS, 3)
    local victim = K.leader(topic, 0)
    local led = {}
    for part = 0, PARTITIONS - 1 do
      if K.leader(topic, part) == victim then led[#led + 1] = part end
    end

    local log = K.recorder()
    local n_reports, failures = 0, {}
    local seen = {}                 -- message index -> partition:offset
    local last_at = {}              -- partition -> time of its last successful report
    local gap = {}                  -- partition -> longest time between its successful reports
    local t_kill, t_failover, restart_started
    local config = {
      ["broker.address.family"] = "v4",
      ["message.timeout.ms"] = TIMEOUT_MS,
      -- a small local queue: while partition 0 has no leader its
      -- messages pile up, produce returns _QUEUE_FULL and the loop
      -- polls and retries (back-pressure, as a real producer sees it)
      ["queue.buffering.max.messages"] = QUEUE_MAX,
    }
    -- exactly once and in order rest on the library's defaults: check
    -- that they hold and nothing above turns them off
    local effective = producers.kafka.config({ bootstrap_servers = env.KAFKA_BOOTSTRAP, config = config })
    assert.is_true(effective["enable.idempotence"])
    assert.equal("all", effective["acks"])
    local p = producers.kafka.new{
      bootstrap_servers = env.KAFKA_BOOTSTRAP, logger = log.fn, config = config,
      on_delivery = function(err, r)
        local now = K.now()
        n_reports = n_reports + 1
        local i = tonumber(r.value:match("|(%d+)$"))
        if err then
          if #failures < 20 then failures[#failures + 1] = ("%d: %s (%s)"):format(i, err, r.error) end
          return
        end
        local pos = r.partition .. ":" .. r.offset
        assert(seen[i] == nil, ("message %d reported twice (%s and %s)"):format(i, tostring(seen[i]), pos))
        seen[i] = pos
        local prev = last_at[r.partition]
        if prev and now - prev > (gap[r.partition] or 0) then gap[r.partition] = now - prev end
        last_at[r.partition] = now
        -- failover time: from the kill to the first delivery to partition 0
        -- of a message produced after the kill
        if r.partition == 0 and t_kill and not t_failover and now - r.latency > t_kill then
          t_failover = now - t_kill
        end
      end,
    }

    local seq = {}                  -- key -> last sequence number produced
    local produced, queue_full = 0, 0
    local function produce_one()
      local idx = produced + 1
      local key = ("key-%02d"):format(idx % KEYS)
      local s = (seq[key] or 0) + 1
      local ok, msg, code = p:produce(topic, key, ("%s|%06d|%06d"):format(key, s, idx))
      if ok then
        seq[key] = s
        produced = idx
        return true
      end
      assert(code == "_QUEUE_FULL", ("produce: %s (%s)"):format(tostring(msg), tostring(code)))
      queue_full = queue_full + 1
      return false
    end

    local donefile = os.tmpname()
    os.remove(donefile)
    local restart_log = os.tmpname()
    -- start-node runs in the background (it waits until the node serves),
    -- so the stream goes on meanwhile; its exit status lands in donefile
    local function maybe_restart()
      if t_failover and not restart_started then
        restart_started = true
        os.execute(("(%s start-node %d >%s 2>&1; echo $? >%s) </dev/null >/dev/null 2>&1 &")
          :format(K.q(K.broker_sh()), victim, K.q(restart_log), K.q(donefile)))
        return K.now()
      end
    end

    local t0 = K.now()
    local t_restart, t_stream_end
    while produced < N do
      local target = math.min(N, math.floor((K.now() - t0) * RATE) + 1)
      while produced < target do
        if not produce_one() then p:poll(0.01) end
      end
      if not t_kill and produced >= KILL_AT then
        K.must_broker("kill-node", victim)
        t_kill = K.now()
      end
      if not restart_started then t_restart = maybe_restart() end
      p:poll(0.005)
    end
    t_stream_end = K.now()

    -- the failover may outlast the stream: wait for it, then restart the node
    assert.truthy(K.wait_for(function() return t_failover end, 60, p),
      ("no delivery to partition 0 within 60 s of the kill\n%s\n%s"):format(log.tail(30), K.broker_logs(40)))
    if not restart_started then t_restart = maybe_restart() end
    assert.is_true(p:flush(TIMEOUT_MS / 1000), ("%d of %d reports"):format(n_reports, N))
    local t_flushed = K.now()
    local restarted = K.wait_for(function()
      local f = io.open(donefile)
      if not f then return false end
      local rc = f:read("*n")
      f:close()
      return rc ~= nil and { rc = rc }
    end, 90)
    local rf = io.open(restart_log)
    local restart_out = rf and rf:read("*a") or ""
    if rf then rf:close() end
    os.remove(donefile)
    os.remove(restart_log)
    assert.truthy(restarted, "start-node did not finish within 90 s:\n" .. restart_out)
    assert.equal(0, restarted.rc, "start-node failed:\n" .. restart_out)
    local t_node_back = restart_out:match("serves again after (%d+) ms")

    p:close()
    assert.equal(N, n_reports)
    assert.same({}, failures)
    -- the idempotent producer never hit a fatal error (that would fail
    -- every message after it)
    assert.is_nil(log.find("^fatal error"), log.text())

    -- read back: each key's messages exactly once, in order, in one partition
    local got = K.kcat_read(topic, "plaintext", 120)
    assert.equal(N, #got)
    local part_of, next_seq, found = {}, {}, {}
    local per_partition = {}
    for _, rec in ipairs(got) do
      local key, s, idx = rec.value:match("^(key%-%d+)|(%d+)|(%d+)$")
      s, idx = tonumber(s), tonumber(idx)
      assert.equal(key, rec.key)
      assert.is_nil(found[idx], "message " .. idx .. " read back twice")
      found[idx] = true
      assert.equal(seen[idx], rec.partition .. ":" .. rec.offset)   -- as its report said
      part_of[key] = part_of[key] or rec.partition
      assert.equal(part_of[key], rec.partition)
      assert.equal((next_seq[key] or 1), s, "sequence of " .. key)        -- no gap, no duplicate, in order
      next_seq[key] = s + 1
      per_partition[rec.partition] = (per_partition[rec.partition] or 0) + 1
    end
    for key, last in pairs(seq) do assert.equal(last + 1, next_seq[key], key) end

    local longest, longest_part = 0, nil
    for part, g in pairs(gap) do
      if g > longest then longest, longest_part = g, part end
    end
    local counts = {}
    for part = 0, PARTITIONS - 1 do counts[#counts + 1] = ("%d:%d"):format(part, per_partition[part] or 0) end
    print(("\n  failover: killed node %d (leader of partitions %s) after %d messages; first delivery to partition 0 "
      .. "of a message produced after the kill: %.2fs after the kill"):format(
      victim, table.concat(led, ","), KILL_AT, t_failover))
    print(("  longest gap between delivery reports: partition 0 %.2fs; any partition %.2fs (partition %s)")
      :format(gap[0] or 0, longest, tostring(longest_part)))
    print(("  node %d restarted %.2fs after the kill (start-node: serves after %s ms); stream of %d at %d/s took %.1fs, "
      .. "flushed %.1fs later; _QUEUE_FULL retries %d; per partition %s")
      :format(victim, t_restart - t_kill, tostring(t_node_back), N, RATE, t_stream_end - t0,
        t_flushed - t_stream_end, queue_full, table.concat(counts, " ")))
    local levels, shown = {}, {}
    for _, l in ipairs(log.lines) do
      levels[l[1]] = (levels[l[1]] or 0) + 1
      if (l[1] == "warn" or l[1] == "error") and #shown < 12 then shown[#shown + 1] = "    " .. l[1] .. " " .. l[2] end
    end
    print(("  producer log during the run: %d warn, %d error line(s)%s")
      :format(levels.warn or 0, levels.error or 0, #shown > 0 and (":\n" .. table.concat(shown, "\n")) or ""))
  end)
end)
