-- Transactions (#16) against a real broker: what a read_committed
-- consumer (kcat, an independent client) sees of committed, aborted and
-- abandoned transactions, and fencing by transactional.id: a producer
-- killed mid-transaction and restarted, and two live producers of one id.
local producers = require("producers")
local H = require("helpers")
local K = require("integration.kafka_helpers")

-- The keys of topic's messages as kcat reads them, in offset order (one
-- partition): committed = true reads with isolation.level=read_committed
-- (librdkafka's default), false with read_uncommitted.
local function keys(topic, committed)
  local args = K.kcat_args("plaintext") .. " -X isolation.level="
    .. (committed and "read_committed" or "read_uncommitted")
  local out = {}
  for _, r in ipairs(H.kcat_read_args(args, topic, 60)) do out[#out + 1] = r.key end
  return out
end

-- The failure tuple's first three values as a table, and the object.
local function head(ok, msg, name, err)
  return { ok, msg, name }, err
end

describe("transactions on a real broker #integration", function()
  local env, log
  setup(function() env = K.broker_env() end)
  before_each(function() log = K.recorder() end)

  local function txn_producer(id, on_delivery)
    return producers.kafka.new{
      bootstrap_servers = env.KAFKA_BOOTSTRAP,
      logger = log.fn,
      on_delivery = on_delivery,
      config = { ["broker.address.family"] = "v4", ["transactional.id"] = id },
    }
  end

  -- Produces each key (value: the key) in the open transaction of p.
  local function produce(p, topic, list)
    for _, k in ipairs(list) do assert.is_true(p:produce(topic, k, k)) end
  end

  K.it("shows committed messages to read_committed and hides aborted ones, which were written", function()
    local topic = K.topic("txn")
    K.create_topic(topic, 1)
    local failed = {}
    local p = txn_producer(K.topic("txn-id"), function(err, r)
      if err then failed[#failed + 1] = r.key .. ": " .. err end
    end)
    assert.is_true(p:init_transactions(60))
    assert.is_true(p:begin_transaction())
    produce(p, topic, { "c1", "c2" })
    assert.is_true(p:commit_transaction(60))
    assert.is_true(p:begin_transaction())
    produce(p, topic, { "a1", "a2" })
    assert.is_true(p:flush(30))          -- written, then aborted
    assert.is_true(p:abort_transaction(60))
    assert.is_true(p:begin_transaction())
    produce(p, topic, { "c3" })
    assert.is_true(p:commit_transaction(60))
    p:close()
    assert.same({}, failed)
    assert.same({ "c1", "c2", "c3" }, keys(topic, true))
    assert.same({ "c1", "c2", "a1", "a2", "c3" }, keys(topic, false))
  end)

  K.it("close aborts an open transaction: its reports come, its messages stay invisible, read_committed is not held", function()
    local topic = K.topic("txn-close")
    K.create_topic(topic, 1)
    local reports = {}
    local p = txn_producer(K.topic("txn-close-id"), function(err, r) reports[#reports + 1] = { r.key, err } end)
    assert.is_true(p:init_transactions(60))
    assert.is_true(p:begin_transaction())
    produce(p, topic, { "open1", "open2" })
    p:close()
    assert.same({ { "open1" }, { "open2" } }, reports)
    -- a message after it: read_committed reaches it only if the
    -- transaction has ended (an open one holds the last stable offset)
    local plain = producers.kafka.new{ bootstrap_servers = env.KAFKA_BOOTSTRAP, logger = log.fn,
                                       config = { ["broker.address.family"] = "v4" } }
    assert.is_true(plain:produce(topic, "plain1", "v"))
    assert.is_true(plain:flush(30))
    plain:close()
    assert.same({ "plain1" }, keys(topic, true))
    assert.same({ "open1", "open2", "plain1" }, keys(topic, false))
  end)

  K.it("a producer killed mid-transaction is fenced by its restart: its messages never become visible", function()
    local topic = K.topic("txn-kill")
    K.create_topic(topic, 1)
    local id = K.topic("txn-kill-id")
    local build = os.getenv("PRODUCERS_BUILD_DIR") or "build"
    local lua = os.getenv("PRODUCERS_LUA") or "lua5.4"
    local script, out = os.tmpname(), os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(([[
      local producers = require("producers")
      local p = producers.kafka.new{ bootstrap_servers = %q, logger = function() end,
        config = { ["broker.address.family"] = "v4", ["transactional.id"] = %q } }
      assert(p:init_transactions(60))
      assert(p:begin_transaction())
      for _, k in ipairs({ "old1", "old2", "old3" }) do assert(p:produce(%q, k, k)) end
      assert(p:flush(30))
      io.stdout:write("READY\n")
      io.stdout:flush()
      while true do p:poll(1) end
    ]]):format(env.KAFKA_BOOTSTRAP, id, topic))
    f:close()
    local pid = tonumber((K.sh(("LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH=%s %s %s >%s 2>&1 & echo $!")
      :format(K.q(build .. "/?.so;;"), lua, K.q(script), K.q(out)))))
    assert.is_number(pid)
    local ready = K.wait_for(function() return (H.read(out) or ""):find("READY", 1, true) end, 60)
    if not ready then os.execute("kill -KILL " .. pid) end
    assert.is_truthy(ready, H.read(out))
    assert.is_true(select(2, K.sh("kill -KILL " .. pid)))
    assert.is_truthy(K.wait_for(function() return not select(2, K.sh("kill -0 " .. pid)) end, 10))
    os.remove(script)
    os.remove(out)

    local p = txn_producer(id)
    assert.is_true(p:init_transactions(60))     -- fences the old producer
    assert.is_true(p:begin_transaction())
    produce(p, topic, { "new1" })
    assert.is_true(p:commit_transaction(60))
    p:close()
    assert.same({ "new1" }, keys(topic, true))
    assert.same({ "old1", "old2", "old3", "new1" }, keys(topic, false))
  end)

  K.it("two live producers of one transactional.id: the older gets a fatal error as a value", function()
    local topic = K.topic("txn-fence")
    K.create_topic(topic, 1)
    local id = K.topic("txn-fence-id")
    local old = txn_producer(id)
    assert.is_true(old:init_transactions(60))
    assert.is_true(old:begin_transaction())
    produce(old, topic, { "old1" })
    assert.is_true(old:flush(30))

    local new = txn_producer(id)
    assert.is_true(new:init_transactions(60))

    local r, err = head(old:commit_transaction(60))
    assert.is_nil(r[1])
    assert.equal("_FATAL", r[3])
    assert.equal("Local: Fatal error", r[2])
    assert.matches("^fatal error: ", err.message)
    assert.is_true(err.fatal)
    assert.equal("_FENCED", err.name)
    for _, method in ipairs({ "begin_transaction", "abort_transaction", "init_transactions" }) do
      assert.same(r, head(old[method](old, 5)), method)
    end
    assert.same(r, head(old:produce(topic, "k", "v")))
    old:close()

    assert.is_true(new:begin_transaction())
    produce(new, topic, { "new1" })
    assert.is_true(new:commit_transaction(60))
    new:close()
    assert.same({ "new1" }, keys(topic, true))
    assert.same({ "old1", "new1" }, keys(topic, false))
  end)
end)
