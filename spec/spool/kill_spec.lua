-- The spool across a kill -9 (issue #22, I10, I14), on a mock cluster
-- that lives in a process of its own, so it outlives the producer killed:
-- a child accepts messages while every broker is down and is killed -9;
-- the next producer on its directory delivers them, oldest first, before
-- its own new messages. kcat, a client we did not write, reads back the
-- partition.
local producers = require("producers")
local H = require("helpers")
local child = require("support.child")
local S = require("support.spool")

-- The mock cluster's process: prints its address, then obeys lines on
-- its input ("down", "up", "topic NAME"), answering "ok LINE" to each.
local MOCK = [[
local producers = require("producers")
local m = producers.mock_cluster(1)
io.stdout:write(m:bootstraps(), "\n"); io.stdout:flush()
for line in io.lines() do
  if line == "down" then m:broker_down(-1)
  elseif line == "up" then m:broker_up(-1)
  elseif line:match("^topic ") then m:create_topic(line:sub(7), 1, 1) end
  io.stdout:write("ok ", line, "\n"); io.stdout:flush()
end
]]

-- A producer on the spool dir: delivers 1..K, then, once told "go",
-- accepts K+1..N (printing each), then waits to be killed.
local PRODUCER = [[
local producers = require("producers")
local bootstrap, dir, topic, K, N = arg[1], arg[2], arg[3], tonumber(arg[4]), tonumber(arg[5])
local p = producers.kafka.new{ bootstrap_servers = bootstrap, spool = { dir = dir },
  logger = function() end, config = { ["message.timeout.ms"] = 300000 } }
for i = 1, K do assert(p:produce(topic, nil, tostring(i), { partition = 0 })) end
assert(p:flush(20))
io.stdout:write("flushed\n"); io.stdout:flush()
io.read("*l")
for i = K + 1, N do
  assert(p:produce(topic, nil, tostring(i), { partition = 0 }))
  io.stdout:write("accepted ", i, "\n"); io.stdout:flush()
end
io.stdout:write("done\n"); io.stdout:flush()
io.read("*l")
]]

describe("a spooled producer killed -9", function()
  local mock, dir
  before_each(function()
    dir = S.tmpdir()
    mock = child.start{ code = MOCK }
  end)
  after_each(function()
    mock:cleanup()
    S.rm(dir)
  end)

  local function command(line)
    mock:write(line .. "\n")
    mock:wait_output("ok " .. line)
  end

  it("loses nothing it accepted: the next producer delivers it first, in order (I10)", function()
    local K, N, NEW = 20, 120, 10
    mock:wait_output("\n")
    local bootstrap = mock:stdout():match("^([^\n]+)")
    local topic = H.topic("kill")
    command("topic " .. topic)
    local c = child.start{ code = PRODUCER, args = { bootstrap, dir, topic, tostring(K), tostring(N) } }
    finally(function() c:cleanup() end)
    c:wait_output("flushed", 30)
    command("down")
    c:write("go\n")
    c:wait_output("done", 30)
    c:kill("KILL")
    assert.equal(137, c:wait(10))
    command("up")
    local log, replayed = H.recorder(), 0
    -- librdkafka takes 5 messages at a time: the replay waits in the
    -- spool, paced by its queue, and the new messages behind it
    local p = producers.kafka.new{ bootstrap_servers = bootstrap, spool = { dir = dir }, logger = log.fn,
      config = { ["queue.buffering.max.messages"] = 5 },
      on_delivery = function(err, r)
        assert.is_nil(err)
        if r.replayed then replayed = replayed + 1 end
      end }
    assert.is_not_nil(log.find(("resumed: %d records"):format(N - K), "info"), log.text())
    for i = N + 1, N + NEW do assert.is_true(p:produce(topic, nil, tostring(i), { partition = 0 })) end
    assert.is_true(p:flush(30))
    assert.equal(N - K, replayed)
    assert.equal(N - K, p:metrics().spool.replayed)
    p:close()
    local values = S.values(bootstrap, topic)
    local want = {}
    for i = 1, N + NEW do want[i] = tostring(i) end
    assert.same(want, values)
  end)
end)
