-- The durable spool (issue #22, docs/design/spool.md) against process
-- deaths, a broker outage and refusals, on the real single-node broker:
-- a plain Lua producer (spec/support/spool_producer.lua) prints each
-- number whose produce returned true; it is killed (-9 at random moments,
-- once between a segment's two unlinks, SIGTERM, SIGINT), the same script
-- is started again on the same dir with 20 new numbers to send and
-- waits until its spool is empty, then kcat (an independent client) reads the
-- topic back: every number printed as accepted is on the broker (I7, I8,
-- I10), and the copies beyond one stay within the in-flight window
-- (I15). Then: the broker stopped longer than message.timeout.ms while
-- producing (I5, I6: every accepted message delivered, no failure
-- report), SPOOL_FULL, SPOOL_IO from RLIMIT_FSIZE, a full tmpfs and an
-- unwritable dir (I4), two processes on one dir (I9), and a spool written
-- under Lua 5.4 delivered by the LuaJIT build.
--
-- The duplicate bound WINDOW: a record is sent twice only if the broker
-- wrote it and the process died before its ack: it was in one of the
-- max.in.flight.requests.per.connection (5) requests of at most
-- batch.num.messages (100) records the script configures (one broker),
-- or its response had arrived and its reports were not served yet (the
-- script serves reports on every produce and polls every 2 ms: one more
-- batch). WINDOW = (5 + 1) x 100 per run.
--
-- Each run sends a few thousand messages at 3,000/s, so the file takes
-- well under the lane's minutes. PRODUCERS_SPOOL_KILL_SEED fixes the
-- random kill moments (printed).
local K = require("integration.kafka_helpers")
local H = require("helpers")
local child = require("support.child")

local q = K.q
local SCRIPT = "spec/support/spool_producer.lua"
local WINDOW = (5 + 1) * 100
local PER_RUN = 5000            -- numbers a run may send (each run its own range)
local RATE = 3000
local SEED = tonumber(os.getenv("PRODUCERS_SPOOL_KILL_SEED")) or os.time()
math.randomseed(SEED)

local root = io.popen("pwd"):read("*l")
local luajit_build = os.getenv("PRODUCERS_NGINX_BUILD_DIR") or "build-luajit"
if luajit_build:sub(1, 1) ~= "/" then luajit_build = root .. "/" .. luajit_build end

-- ------------------------------------------------------------ helpers

local tmp_serial = 0
--- A fresh folder /tmp/spoolk-<what>-<pid-ish>-<n> (the parent of a spool dir).
local function tmpdir(what)
  tmp_serial = tmp_serial + 1
  local d = ("/tmp/spoolk-%s-%d-%04x-%d"):format(what, os.time(), math.random(0, 0xffff), tmp_serial)
  assert(os.execute("mkdir -p " .. q(d)))
  return d
end

--- Starts the producer script: args is a table of its key=value options.
local function start(args, opts)
  local list = {}
  for k, v in pairs(args) do list[#list + 1] = k .. "=" .. tostring(v) end
  opts = opts or {}
  return child.start{ script = SCRIPT, args = list, stdin = "true", lua = opts.lua, env = opts.env }
end

--- The numbers a child printed as accepted (complete lines only).
local function accepted(c)
  local out = {}
  for n in c:stdout():gmatch("(%d+)\n") do out[#out + 1] = tonumber(n) end
  return out
end

--- Lines of text (a child's stderr) that start with word.
local function events(text, word)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    if line:sub(1, #word + 1) == word .. " " then out[#out + 1] = line end
  end
  return out
end

--- Starts the script on dir with nothing new to send (or the numbers
-- from..to) and waits until its spool is empty; raises with its output
-- otherwise. Returns its stderr and the numbers it accepted.
local function drain(dir, topic, opts, from, to)
  local env = K.env()
  local c = start({ dir = dir, topic = topic, brokers = env.KAFKA_BOOTSTRAP, from = from or 1, to = to or 0,
                    drain = 1 }, opts)
  local status = c:wait(90)
  local err, list = c:stderr(), accepted(c)
  c:cleanup()
  assert(status == 0 and err:find("\ndrained 0"),
    ("the restart on %s did not drain (status %s):\n%s"):format(dir, tostring(status), err))
  assert(#events(err, "failed") == 0, "a failure report:\n" .. err)
  return err, list
end

--- The topic's records read back: number -> copies.
local function copies_of(topic)
  local copies = {}
  for _, r in ipairs(K.kcat_read(topic, "plaintext", 120)) do
    local n = assert(tonumber(r.value), "a record that is not a number: " .. tostring(r.value))
    copies[n] = (copies[n] or 0) + 1
  end
  return copies
end

--- Checks that every number of list is on the broker; returns how many
-- numbers are missing (a list), and the extra copies of numbers in [lo, hi].
local function check(copies, list, lo, hi)
  local missing = {}
  for _, n in ipairs(list) do
    if not copies[n] then missing[#missing + 1] = n end
  end
  local dups = 0
  for n, k in pairs(copies) do
    if n >= lo and n <= hi and k > 1 then dups = dups + k - 1 end
  end
  return missing, dups
end

--- Segment files (.seg) and ack files without their segment in dir.
local function orphan_acks(dir)
  local out = K.sh("ls " .. q(dir))
  local segs, orphans = {}, 0
  for name in out:gmatch("(%d+)%.seg") do segs[name] = true end
  for name in out:gmatch("(%d+)%.ack") do if not segs[name] then orphans = orphans + 1 end end
  return orphans
end

-- ------------------------------------------------------------ the specs

describe("the spool across process deaths, real broker #integration", function()
  local env, topic
  local dirs = {}

  setup(function()
    env = K.broker_env()
    topic = K.topic("spool-kill")
    K.create_topic(topic, 3)
    print(("\n  spool kill spec: seed %d (PRODUCERS_SPOOL_KILL_SEED), topic %s"):format(SEED, topic))
  end)
  teardown(function()
    for _, d in ipairs(dirs) do os.execute("rm -rf " .. q(d)) end
  end)

  local run = 0
  --- One run: start the script on dir, wait for ready, let it send for
  -- delay seconds, send it sig, wait for its end, drain dir with a
  -- restart. Returns the numbers it printed and its [lo, hi].
  local function killed_run(dir, sig, delay, extra, opts)
    run = run + 1
    local lo = run * 100000 + 1
    local args = { dir = dir, topic = topic, brokers = env.KAFKA_BOOTSTRAP, from = lo,
                   to = lo + PER_RUN - 1, rate = RATE, segment_bytes = 16384 }
    for k, v in pairs(extra or {}) do args[k] = v end
    local c = start(args, opts)
    c:wait_output("ready", 30)
    if delay then child.sleep(delay) end   -- the random kill moment: the input, not a wait
    if sig and not c:exited() then c:kill(sig) end
    local status = c:wait(30)
    local list, err = accepted(c), c:stderr()
    c:cleanup()
    assert(status, "the producer did not end")
    assert(#events(err, "failed") == 0, "a failure report:\n" .. err)
    return list, lo, lo + PER_RUN - 1, status
  end

  K.it("kill -9 at 10 random moments, SIGTERM and SIGINT: every accepted number is on the broker, "
    .. "copies within the in-flight window", function()
    local dir = tmpdir("kill") .. "/spool"
    dirs[#dirs + 1] = dir:match("^(.*)/spool$")
    local runs = {}
    local function one(sig)
      local delay = 0.05 + math.random() * 1.5
      local list, lo, _, status = killed_run(dir, sig, delay)
      local orphans = orphan_acks(dir)
      -- the restart sends 20 new numbers of its own beside the backlog
      local _, new = drain(dir, topic, nil, lo + 90000, lo + 90019)
      assert.equal(20, #new)
      for _, n in ipairs(new) do list[#list + 1] = n end
      runs[#runs + 1] = { sig = sig, delay = delay, list = list, lo = lo, hi = lo + 99999, status = status,
                          orphans = orphans }
    end
    for _ = 1, 10 do one("KILL") end
    for _ = 1, 3 do one("TERM") end
    for _ = 1, 3 do one("INT") end

    local copies = copies_of(topic)
    local total_dups, total = 0, 0
    for i, r in ipairs(runs) do
      local missing, dups = check(copies, r.list, r.lo, r.hi)
      print(("  run %2d: SIG%s after %.2f s (exit %s): %d accepted, %d missing, %d extra copies%s")
        :format(i, r.sig, r.delay, tostring(r.status), #r.list, #missing, dups,
                r.orphans > 0 and (", " .. r.orphans .. " .ack without .seg") or ""))
      assert.same({}, missing)
      assert.is_true(dups <= WINDOW, ("run %d: %d extra copies > window %d"):format(i, dups, WINDOW))
      total_dups, total = total_dups + dups, total + #r.list
    end
    print(("  %d runs, %d accepted, %d extra copies in all"):format(#runs, total, total_dups))
    -- the kills landed while the script was sending: some runs accepted something
    assert.is_true(total > 0)
  end)

  K.it("kill -9 between a segment's two unlinks: the ack file left alone is removed, nothing lost", function()
    local strace = K.sh("command -v strace")
    if not strace:find("strace") then return pending("no strace: cannot stop the process at its unlink") end
    local dir = tmpdir("unlink") .. "/spool"
    dirs[#dirs + 1] = dir:match("^(.*)/spool$")
    -- SIGKILL on entry to the 2nd unlink: a segment's .seg is gone, its
    -- .ack not yet (I7's order); tiny segments so one fills and is acked fast
    local lua = ("strace -f -qq -o /dev/null -e trace=unlink,unlinkat "
      .. "-e inject=unlink,unlinkat:signal=KILL:when=2 %s"):format(os.getenv("PRODUCERS_LUA") or "lua5.4")
    local list, lo, hi, status = killed_run(dir, nil, nil, { segment_bytes = 4096, rate = 1500 }, { lua = lua })
    local orphans = orphan_acks(dir)
    drain(dir, topic)
    local missing, dups = check(copies_of(topic), list, lo, hi)
    print(("  between the unlinks: exit %s, %d accepted, %d .ack without .seg, %d missing, %d extra copies")
      :format(tostring(status), #list, orphans, #missing, dups))
    assert.equal(137, status)          -- ended by SIGKILL, not by running out of numbers
    assert.equal(1, orphans)           -- the state I7 allows: acks without data
    assert.equal(0, orphan_acks(dir))  -- start-up removed it
    assert.same({}, missing)
    assert.is_true(dups <= WINDOW)
  end)
end)

describe("the spool through a broker outage longer than message.timeout.ms #integration", function()
  local dir
  teardown(function()
    if not K.running(1) then K.broker("start-node", 1) end
    if dir then os.execute("rm -rf " .. q(dir)) end
  end)

  K.it("delivers every accepted message, with no failure report", function()
    local env = K.broker_env()
    local topic = K.topic("spool-outage")
    K.create_topic(topic, 3)
    dir = tmpdir("outage")
    local producers = require("producers")
    local failures, log = {}, K.recorder()
    local p = assert(producers.kafka.new{
      bootstrap_servers = env.KAFKA_BOOTSTRAP, logger = log.fn,
      spool = { dir = dir .. "/spool" },
      config = { ["broker.address.family"] = "v4", ["message.timeout.ms"] = 3000, ["linger.ms"] = 5 },
      on_delivery = function(err, r) if err then failures[#failures + 1] = tostring(r.value) .. ": " .. err end end,
    })
    local produced, accepted_list, refused = 0, {}, 0
    local function stream(seconds, rate)
      local t0, n0 = K.now(), produced
      while K.now() - t0 < seconds do
        local target = n0 + math.floor((K.now() - t0) * rate)
        while produced < target do
          produced = produced + 1
          if p:produce(topic, tostring(produced % 16), tostring(produced)) then
            accepted_list[#accepted_list + 1] = produced
          else
            refused = refused + 1
          end
        end
        p:poll(0.005)
      end
    end
    stream(1, 500)
    K.must_broker("kill-node", 1)
    local t_down = K.now()
    stream(5, 500)                          -- longer than message.timeout.ms: messages time out
    local done = os.tmpname()
    os.remove(done)
    os.execute(("(%s start-node 1 >/dev/null 2>&1; echo $? >%s) </dev/null >/dev/null 2>&1 &")
      :format(q(K.broker_sh()), q(done)))
    local back = K.wait_for(function() return H.read(done) end, 120, function() stream(0.2, 200) end)
    os.remove(done)
    assert.is_truthy(back, "the node did not come back within 120 s")
    local outage = K.now() - t_down
    stream(1, 500)
    local drained = K.wait_for(function() return p:metrics().spool.records == 0 end, 90, p)
    local m = p:metrics().spool
    p:close()
    local copies = copies_of(topic)
    local missing, dups = check(copies, accepted_list, 1, produced)
    print(("\n  outage %.1f s: %d produced, %d refused, %d missing, %d extra copies; spool: resent %s, "
      .. "possibly persisted %s"):format(outage, produced, refused, #missing, dups, tostring(m.resent),
        tostring(m.resent_possibly_persisted)))
    assert.is_truthy(drained, "the spool still holds records: " .. tostring(m.records))
    assert.same({}, failures)                  -- a retriable failure is never reported (I6)
    assert.equal(0, refused)
    assert.same({}, missing)                   -- every accepted message on the broker (I5)
    assert.is_true((m.resent or 0) > 0, "nothing was re-sent: the outage was too short to test anything")
    -- a copy only where the broker may have written the first send (I15)
    assert.is_true(dups <= (m.resent_possibly_persisted or 0),
      ("%d extra copies, %s possibly persisted"):format(dups, tostring(m.resent_possibly_persisted)))
  end)
end)

describe("the spool's refusals, real broker #integration", function()
  local env, topic
  local dirs, mounts = {}, {}
  setup(function()
    env = K.broker_env()
    topic = K.topic("spool-refuse")
    K.create_topic(topic, 3)
  end)
  teardown(function()
    for _, m in ipairs(mounts) do os.execute("umount " .. q(m) .. " 2>/dev/null") end
    for _, d in ipairs(dirs) do os.execute("rm -rf " .. q(d)) end
  end)
  local function fresh(what)
    local d = tmpdir(what)
    dirs[#dirs + 1] = d
    return d
  end

  local range = 0
  --- Runs the script with no broker (a closed port: nothing leaves the
  -- spool) until it has tried every number, then kills it -9; returns the
  -- numbers accepted and the refusals ("refused n NAME message" lines).
  local function offline_run(dir, extra, opts, count)
    range = range + 1
    local lo = range * 100000 + 1
    local last = lo + (count or 2000) - 1
    local args = { dir = dir, topic = topic, brokers = "127.0.0.1:1", from = lo, to = last,
                   rate = 1000000 }
    for k, v in pairs(extra or {}) do args[k] = v end
    local c = start(args, opts)
    c:wait_output("ready", 30)
    -- the loop is over when the last number was accepted or refused
    last = tostring(last)
    assert(c:wait_for(function()
      return c:stdout():find("\n" .. last .. "\n", 1, true) or c:stderr():find("refused " .. last .. " ", 1, true)
        or c:exited()
    end, 60), "the producer did not get through its numbers:\n" .. c:output())
    if not c:exited() then c:kill("KILL") end   -- (a close after the loop may have ended it)
    c:wait(10)
    local list, refusals = accepted(c), events(c:stderr(), "refused")
    c:cleanup()
    return list, refusals, lo
  end

  --- Drains dir on the broker and checks the accepted numbers arrived,
  -- once each (a producer that never reached a broker had nothing in
  -- flight), or within the window (window: one that was killed sending).
  local function delivered(dir, list, lo, window)
    drain(dir, topic)
    local missing, dups = check(copies_of(topic), list, lo, lo + 99999)
    assert.same({}, missing)
    assert.is_true(dups <= (window or 0), dups .. " extra copies")
  end

  --- offline_run, then: some numbers accepted, then refusals whose first
  -- line matches pattern; the next producer delivers what was accepted.
  local function refused_then_delivered(pattern, dir, extra, opts, count)
    local list, refusals, lo = offline_run(dir, extra, opts, count)
    assert.is_true(#list > 0)
    assert.is_true(#refusals > 0, "nothing refused")
    assert.matches(pattern, refusals[1])
    delivered(dir, list, lo)
  end

  K.it("max_bytes reached: SPOOL_FULL; what was accepted is delivered by the next producer", function()
    refused_then_delivered("^refused %d+ SPOOL_FULL ", fresh("full") .. "/spool",
      { max_bytes = 65536, segment_bytes = 16384 })
  end)

  K.it("a file size limit (RLIMIT_FSIZE, SIGXFSZ ignored): SPOOL_IO, the process lives on", function()
    local dir = fresh("fsize") .. "/spool"
    -- dash's ulimit -f counts 512-byte blocks: 96 KiB per file
    local lua = ("sh -c 'trap \"\" XFSZ; ulimit -f 192; exec \"$0\" \"$@\"' %s")
      :format(os.getenv("PRODUCERS_LUA") or "lua5.4")
    refused_then_delivered("^refused %d+ SPOOL_IO .*[Ff]ile too large", dir, { segment_bytes = 1048576 },
      { lua = lua })
  end)

  K.it("a full filesystem (a 256 KiB tmpfs): SPOOL_IO naming ENOSPC; the full spool still delivers", function()
    local mnt = fresh("tmpfs")
    local _, ok = K.sh("mount -t tmpfs -o size=256k tmpfs " .. q(mnt))
    if not ok then return pending("mount is not permitted here: the RLIMIT_FSIZE case covers SPOOL_IO") end
    mounts[#mounts + 1] = mnt
    local dir = mnt .. "/spool"
    -- 6,000 records of some 64 bytes: more than the 256 KiB
    refused_then_delivered("^refused %d+ SPOOL_IO .*[Ss]pace", dir, { segment_bytes = 65536 }, nil, 6000)
  end)

  K.it("an unwritable dir: a file in its place, a read-only filesystem: SPOOL_IO at open", function()
    local parent = fresh("unwritable")
    local file = parent .. "/spool"
    assert(io.open(file, "w")):close()
    local c = start({ dir = file, topic = topic, brokers = env.KAFKA_BOOTSTRAP, from = 1, to = 0 })
    assert.equal(3, c:wait(30))
    assert.matches("open%-failed SPOOL_IO ", c:stderr())
    c:cleanup()
    local ro = parent .. "/ro"
    assert(os.execute("mkdir -p " .. q(ro)))
    local _, ok = K.sh("mount -t tmpfs -o ro,size=64k tmpfs " .. q(ro))
    if not ok then return pending("mount is not permitted here: only the file-in-place case ran") end
    mounts[#mounts + 1] = ro
    c = start({ dir = ro .. "/spool", topic = topic, brokers = env.KAFKA_BOOTSTRAP, from = 1, to = 0 })
    assert.equal(3, c:wait(30))
    assert.matches("open%-failed SPOOL_IO .*[Rr]ead%-only", c:stderr())
    c:cleanup()
  end)

  K.it("two processes on one dir: the second gets SPOOL_LOCKED naming the first's pid", function()
    local dir = fresh("locked") .. "/spool"
    local holder = start({ dir = dir, topic = topic, brokers = env.KAFKA_BOOTSTRAP, from = 900001,
                           to = 900100, rate = 20 })
    holder:wait_output("ready", 30)
    local second = start({ dir = dir, topic = topic, brokers = env.KAFKA_BOOTSTRAP, from = 1, to = 0 })
    local status = second:wait(30)
    local err = second:stderr()
    second:cleanup()
    holder:kill("KILL")
    holder:wait(10)
    local list = accepted(holder)
    holder:cleanup()
    assert.equal(3, status)
    assert.matches("open%-failed SPOOL_LOCKED spool .* is in use by pid " .. holder.pid, err)
    delivered(dir, list, 900001, WINDOW)       -- free again once the holder is dead (I9)
  end)

  K.it("a spool written under Lua 5.4 is delivered by the LuaJIT build", function()
    local lua = os.getenv("PRODUCERS_LUA") or "lua5.4"
    if lua ~= "lua5.4" then return pending("runs under Lua 5.4 (it writes; LuaJIT reads)") end
    if not H.read(luajit_build .. "/producers/core.so") then
      return pending("no LuaJIT build in " .. luajit_build .. " (BUILD_DIR=build-luajit ./scripts/build.sh "
        .. "-DPRODUCERS_LUA=luajit)")
    end
    local dir = fresh("luajit") .. "/spool"
    local list, _, lo = offline_run(dir, nil, nil, 500)
    assert.equal(500, #list)
    local err = drain(dir, topic, { lua = "luajit", env = { LUA_CPATH = luajit_build .. "/?.so;;" } })
    -- the LuaJIT producer resumed every record
    assert.is_truthy(err:find("ready 500\n", 1, true), err)
    local missing, dups = check(copies_of(topic), list, lo, lo + 99999)
    assert.same({}, missing)
    assert.equal(0, dups)
  end)
end)
