-- The durable spool on the producer (issue #22, docs/spool.md), on the
-- mock cluster: produce's promise and refusals (I1, I4), the options,
-- the lock (I9), a torn tail (I11), metrics().spool, the start-up line,
-- the producers-id header read back with kcat.
local producers = require("producers")
local H = require("helpers")
local child = require("support.child")
local S = require("support.spool")

local unpack = table.unpack or unpack
local ID = "^" .. ("%x"):rep(32) .. "%-%d+$"

-- The spool's segment files in dir, sorted.
local function segments(dir)
  local out = H.sh("ls " .. H.shell_quote(dir) .. "/*.seg 2>/dev/null")
  local list = {}
  for path in out:gmatch("[^\n]+") do list[#list + 1] = path end
  table.sort(list)
  return list
end

-- Produces n messages (values prefix .. i) while every broker is down,
-- then closes: the n records stay in dir.
local function leave(m, dir, topic, n, prefix)
  m:broker_down(-1)
  local p = S.producer(m, dir, { config = { ["message.timeout.ms"] = 60000 } })
  for i = 1, n do assert.is_true(p:produce(topic, nil, (prefix or "v") .. i, { partition = 0 })) end
  p:close(0)
  m:broker_up(-1)
end

describe("a producer with a spool", function()
  local m, dirs
  setup(function() m = producers.mock_cluster(1) end)
  teardown(function() m:close() end)
  before_each(function() dirs = {} end)
  after_each(function() S.rm(unpack(dirs)) end)
  local function newdir()
    local d = S.tmpdir()
    dirs[#dirs + 1] = d
    return d
  end

  it("delivers what produce accepted, each message with its producers-id header (kcat reads it)", function()
    local topic, dir, ids = H.topic("spool"), newdir(), {}
    m:create_topic(topic, 1, 1)
    local p = S.producer(m, dir, { on_delivery = function(err, r)
      assert.is_nil(err)
      assert.is_nil(r.replayed)
      ids[r.value] = r.headers["producers-id"]
    end })
    for i = 1, 5 do assert.is_true(p:produce(topic, "k" .. i, "v" .. i, { headers = { app = "spec" } })) end
    assert.equal(5, p:queue_length())
    assert.is_true(p:flush(10))
    assert.equal(0, p:queue_length())
    local got = H.kcat_read(m:bootstraps(), topic)
    assert.equal(5, #got)
    local prefix
    for i, r in ipairs(got) do
      assert.equal("v" .. i, r.value)
      local names = {}
      for _, h in ipairs(r.headers) do names[h[1]] = h[2] end
      assert.equal("spec", names.app)
      assert.matches(ID, names["producers-id"])
      assert.equal(ids[r.value], names["producers-id"])
      local id, seq = names["producers-id"]:match("^(%x+)%-(%d+)$")
      prefix = prefix or id
      assert.equal(prefix, id)                 -- one spool id, seqs in order
      assert.equal(i, tonumber(seq))
    end
    local s = p:metrics().spool
    assert.equal(0, s.records)
    assert.equal(0, s.replayed)
    assert.equal(0, s.resent)
    assert.is_true(s.segments >= 1)
    assert.is_true(s.bytes > 0)
    p:close()
  end)

  it("sends no producers-id with id_header = false: the messages and their reports carry only their own headers", function()
    local topic, dir, reports = H.topic("noid"), newdir(), {}
    m:create_topic(topic, 1, 1)
    local p = S.producer(m, nil, { spool = { dir = dir, id_header = false },
      on_delivery = function(err, r) assert.is_nil(err); reports[#reports + 1] = r end })
    assert.is_true(p:produce(topic, "k1", "v1", { headers = { app = "spec" } }))
    assert.is_true(p:produce(topic, "k2", "v2"))
    assert.is_true(p:flush(10))
    assert.equal(2, #reports)
    assert.is_nil(reports[1].headers["producers-id"])
    assert.equal("spec", reports[1].headers.app)
    assert.is_nil(reports[2].headers)
    p:close()
    local got = H.kcat_read(m:bootstraps(), topic)
    assert.equal(2, #got)
    assert.same({ "k1", "v1", { { "app", "spec" } } }, { got[1].key, got[1].value, got[1].headers })
    assert.same({ "k2", "v2" }, { got[2].key, got[2].value })
    assert.equal(0, #(got[2].headers or {}))
  end)

  it("delivers at each fsync level", function()
    for _, level in ipairs({ "never", "interval", "always" }) do
      local topic, dir = H.topic("fsync-" .. level), newdir()
      m:create_topic(topic, 1, 1)
      local p = S.producer(m, nil, { spool = { dir = dir, fsync = level, fsync_interval_ms = 10 } })
      for i = 1, 3 do assert.is_true(p:produce(topic, nil, level .. i)) end
      assert.is_true(p:flush(10))
      assert.equal(0, p:metrics().spool.fsync_errors)
      p:close()
      assert.same({ level .. "1", level .. "2", level .. "3" }, (S.values(m:bootstraps(), topic)))
    end
  end)

  it("reports a failure no retry can change once, and forgets its record (I5, I6)", function()
    local topic, dir, calls = H.topic("final"), newdir(), {}
    m:create_topic(topic, 1, 1)
    local p = S.producer(m, dir)
    assert.is_true(p:produce(topic, nil, "warm"))
    assert.is_true(p:flush(10))
    m:push_request_errors(0, "TOPIC_AUTHORIZATION_FAILED")
    assert.is_true(p:produce(topic, nil, "denied", { on_delivery = function(err, r)
      calls[#calls + 1] = r.err_name
    end }))
    assert.is_true(p:flush(10))
    assert.same({ "TOPIC_AUTHORIZATION_FAILED" }, calls)
    assert.equal(1, p:stats().failed)
    assert.equal(0, p:metrics().spool.records)
    p:close()
    local log = H.recorder()
    local p2 = S.producer(m, dir, { logger = log.fn })
    assert.equal(0, p2:queue_length())            -- acked as failed: not replayed
    assert.is_nil(log.find("resumed"))
    p2:close()
  end)

  it("has no metrics().spool without a spool", function()
    local p = S.producer(m, nil, {})
    assert.is_nil(p:metrics().spool)
    p:close()
  end)

  it("refuses bad options, naming them", function()
    local function refused(spool, pattern)
      local ok, err = pcall(producers.kafka.new, { bootstrap_servers = m:bootstraps(), spool = spool })
      assert.is_false(ok)
      assert.matches(pattern, tostring(err))
      local ok2, msg = producers.kafka.check({ bootstrap_servers = "x:1", spool = spool })
      assert.is_nil(ok2)
      assert.matches(pattern, msg)
    end
    refused({}, "option 'spool.dir' is required")
    refused({ dir = "/tmp/x", fsync = "sometimes" }, "option 'spool.fsync' must be 'never', 'interval' or 'always', got 'sometimes'")
    refused({ dir = "/tmp/x", max_bytes = 5000.5 }, "option 'spool.max_bytes' must be an integer from 4096 to 9007199254740992, got 5000.5")
    refused({ dir = "/tmp/x", max_bytes = 0 }, "option 'spool.max_bytes' must be an integer from 4096 to 9007199254740992, got 0")
    refused({ dir = "/tmp/x", segment_bytes = 1024 }, "option 'spool.segment_bytes' must be an integer from 4096 to 1073741824, got 1024")
    refused({ dir = "/tmp/x", fsync_interval_ms = 0 }, "option 'spool.fsync_interval_ms' must be an integer from 1 to 2147483647, got 0")
    refused({ dir = "/tmp/x", segment_bytes = "big" }, "option 'spool.segment_bytes' must be a number, got string")
    refused({ dir = "/tmp/x", sizes = 1 }, "option 'spool.sizes' is unknown")
    refused({ dir = "/tmp/x", id_header = "no" }, "option 'spool.id_header' must be a boolean, got string")
    local txn = { bootstrap_servers = m:bootstraps(), spool = { dir = "/tmp/x" }, config = { ["transactional.id"] = "t" } }
    local ok, err = pcall(producers.kafka.new, txn)
    assert.is_false(ok)
    assert.matches("option 'spool' cannot be used with transactional.id", err)
    assert.matches("option 'spool' cannot be used with transactional.id", select(2, producers.kafka.check(txn)))
    ok, err = pcall(producers.kafka.new, { bootstrap_servers = m:bootstraps(), spool = "/tmp/x" })
    assert.is_false(ok)
    assert.matches("option 'spool' must be a table, got string", err)
  end)

  it("refuses produce past max_bytes with SPOOL_FULL, writing and evicting nothing (I4); all accepted are delivered later", function()
    local topic, dir = H.topic("full"), newdir()
    m:create_topic(topic, 1, 1)
    m:broker_down(-1)
    local p = S.producer(m, nil, { spool = { dir = dir, max_bytes = 8192, segment_bytes = 4096 } })
    local accepted, ok, msg, name, err = 0, nil, nil, nil, nil
    repeat
      ok, msg, name, err = p:produce(topic, nil, ("x"):rep(200) .. (accepted + 1))
      if ok then accepted = accepted + 1 end
    until not ok or accepted > 100
    assert.is_nil(ok)
    assert.equal("SPOOL_FULL", name)
    assert.equal("SPOOL_FULL", err.name)
    assert.equal(-1002, err.code)
    assert.equal(msg, err.message)
    local s = p:metrics().spool
    assert.equal(accepted, s.records)
    assert.equal(1, s.refused_full)
    -- a second refusal changes nothing on disk
    assert.is_nil((p:produce(topic, nil, ("x"):rep(200) .. (accepted + 1))))
    assert.equal(s.bytes, p:metrics().spool.bytes)
    assert.equal(accepted, p:metrics().spool.records)
    m:broker_up(-1)
    assert.is_true(p:flush(20))
    assert.equal(0, p:metrics().spool.records)
    local got = H.kcat_read(m:bootstraps(), topic)
    assert.equal(accepted, #got)
    for i, r in ipairs(got) do assert.equal(("x"):rep(200) .. i, r.value) end
    p:close()
  end)

  it("refuses a record larger than a segment, and an unusable dir with SPOOL_IO naming it", function()
    local dir = newdir()
    local p = S.producer(m, nil, { spool = { dir = dir, segment_bytes = 4096 } })
    local ok, msg, name, err = p:produce(H.topic("big"), nil, ("y"):rep(8000))
    assert.is_nil(ok)
    assert.equal("MSG_SIZE_TOO_LARGE", name)
    assert.equal(10, err.code)
    assert.is_false(err.retriable)
    assert.matches("^spool: record larger than segment_bytes %(4096%)", msg)
    assert.equal(0, p:metrics().spool.records)
    p:close()
    local file = os.tmpname()                  -- a file where a directory should be
    local ok2, err = pcall(producers.kafka.new, { bootstrap_servers = m:bootstraps(),
      spool = { dir = file .. "/spool" } })
    os.remove(file)
    assert.is_false(ok2)
    assert.equal("SPOOL_IO", err.name)
    assert.matches("spool " .. file:gsub("%p", "%%%0") .. "/spool", err.message)
    assert.matches("Not a directory", err.message)
    assert.equal(err.message, tostring(err))
  end)

  it("refuses a second producer on a spool in use (I9): in this process and from another, naming its pid", function()
    local dir = newdir()
    local p = S.producer(m, dir)
    local ok, err = pcall(producers.kafka.new, { bootstrap_servers = m:bootstraps(), spool = { dir = dir } })
    assert.is_false(ok)
    assert.equal("SPOOL_LOCKED", err.name)
    assert.equal("spool " .. dir .. " is in use by pid " .. H.sh("echo $PPID"):match("%d+"), err.message)
    p:close()
    local c = child.start{ code = ([[
      local producers = require("producers")
      local p = producers.kafka.new{ bootstrap_servers = %q, spool = { dir = %q } }
      io.stdout:write("ready\n"); io.stdout:flush()
      io.read("*l")
    ]]):format(m:bootstraps(), dir) }
    finally(function() c:cleanup() end)
    c:wait_output("ready")
    ok, err = pcall(producers.kafka.new, { bootstrap_servers = m:bootstraps(), spool = { dir = dir } })
    assert.is_false(ok)
    assert.equal("SPOOL_LOCKED", err.name)
    assert.equal("spool " .. dir .. " is in use by pid " .. c.pid, err.message)
    c:kill("KILL")
    assert.is_not_nil(c:wait(10))
    local p2 = S.producer(m, dir)   -- the kernel freed the lock
    p2:close()
  end)

  it("writes a served batch's acks when the serve ends (I8): killed -9 after flush, it leaves nothing to send again", function()
    local topic, dir = H.topic("acked"), newdir()
    m:create_topic(topic, 1, 1)
    local c = child.start{ code = ([[
      local producers = require("producers")
      local p = producers.kafka.new{ bootstrap_servers = %q, spool = { dir = %q } }
      for i = 1, 100 do assert(p:produce(%q, nil, "v" .. i)) end
      assert(p:flush(10))
      io.stdout:write("flushed " .. p:metrics().spool.records .. "\n"); io.stdout:flush()
      io.read("*l")
    ]]):format(m:bootstraps(), dir, topic) }
    finally(function() c:cleanup() end)
    c:wait_output("flushed 0")
    c:kill("KILL")
    assert.is_not_nil(c:wait(10))
    local p = S.producer(m, dir)
    assert.equal(0, p:metrics().spool.records)
    assert.equal(0, p:queue_length())
    p:close()
    local _, count = S.values(m:bootstraps(), topic)
    for i = 1, 100 do assert.equal(1, count["v" .. i]) end
  end)

  it("leaves what close could not deliver on disk, reports no failure for it, and the next producer delivers it replayed, logging one line", function()
    local topic, dir = H.topic("resume"), newdir()
    m:create_topic(topic, 1, 1)
    local failures = 0
    m:broker_down(-1)
    local p = S.producer(m, dir, { on_delivery = function(err) if err then failures = failures + 1 end end })
    for i = 1, 4 do assert.is_true(p:produce(topic, nil, "v" .. i, { on_delivery = function(err)
      if err then failures = failures + 1 end
    end })) end
    local log = H.recorder()
    p:close(0)
    assert.equal(0, failures)
    assert.is_true(p:is_closed())
    m:broker_up(-1)
    local replayed = {}
    local p2 = S.producer(m, dir, { logger = log.fn, on_delivery = function(err, r)
      assert.is_nil(err)
      replayed[#replayed + 1] = r
    end })
    assert.is_not_nil(log.find("^spool " .. dir:gsub("%p", "%%%0") .. " resumed: 4 records, %d+ bytes, oldest %d+ s, cut 0, damaged 0$", "info"),
      log.text())
    assert.equal(4, p2:queue_length())
    assert.is_true(p2:flush(10))
    assert.equal(4, #replayed)
    for _, r in ipairs(replayed) do
      assert.is_true(r.replayed)
      assert.matches(ID, r.headers["producers-id"])
    end
    local s = p2:metrics().spool
    assert.equal(4, s.replayed)
    assert.equal(0, s.records)
    p2:close()
    assert.equal(0, failures)
    assert.same({ "v1", "v2", "v3", "v4" }, (S.values(m:bootstraps(), topic)))
  end)

  it("cuts a torn tail at start-up (I11), delivers every intact record, counts and logs it", function()
    local topic, dir = H.topic("torn"), newdir()
    m:create_topic(topic, 1, 1)
    leave(m, dir, topic, 5)
    local segs = segments(dir)
    local last = segs[#segs]
    local size = #H.read(last)
    -- the footer frame (48 bytes) and 8 bytes of the last record's frame
    assert(os.execute(("truncate -s %d %s"):format(size - 56, H.shell_quote(last))))
    local log = H.recorder()
    local p = S.producer(m, dir, { logger = log.fn })
    assert.is_not_nil(log.find("resumed: 4 records, %d+ bytes, oldest %d+ s, cut 1, damaged 0$", "info"), log.text())
    assert.equal(1, p:metrics().spool.cut)
    assert.is_true(p:flush(10))
    p:close()
    assert.same({ "v1", "v2", "v3", "v4" }, (S.values(m:bootstraps(), topic)))
  end)
end)
