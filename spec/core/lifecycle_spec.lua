local producers = require("producers")
local H = require("helpers")

-- A producer whose broker never answers: messages stay queued.
local function stuck(opts)
  opts = opts or {}
  opts.bootstrap_servers = "127.0.0.1:1"
  opts.logger = opts.logger or function() end
  return producers.kafka.new(opts)
end

describe("flush", function()
  it("returns nil, 'timed out' and what is still queued when time runs out", function()
    local p = stuck()
    assert.is_true(p:produce("t", "k", "v"))
    assert.is_true(p:produce("t", "k", "v"))
    local ok, msg, _, err = p:flush(0.2)
    local left = err.queued
    assert.is_nil(ok)
    assert.equal("timed out", msg)
    assert.equal(2, left)
    p:close(0)
  end)

  it("refuses a negative timeout", function()
    local p = stuck()
    assert.has_error(function() p:flush(-1) end,
      "bad argument #1 to 'flush' (timeout must be a number of seconds >= 0)")
    p:close(0)
  end)
end)

describe("close", function()
  local m
  setup(function() m = producers.mock_cluster(1) end)
  teardown(function() m:close() end)

  it("delivers what is queued first", function()
    local delivered = 0
    local p = H.producer(m, { config = { ["linger.ms"] = 100 },
                              on_delivery = function(err) if not err then delivered = delivered + 1 end end })
    for i = 1, 50 do assert.is_true(p:produce("close", tostring(i), "v")) end
    p:close(10)
    assert.equal(50, delivered)
  end)

  it("purges what cannot be delivered in time, reports it and logs the count", function()
    local log, errs = H.recorder(), {}
    local p = stuck({ logger = log.fn, on_delivery = function(err, r) errs[#errs + 1] = r.error end })
    for i = 1, 3 do assert.is_true(p:produce("t", tostring(i), "v")) end
    local started = os.time()
    p:close(0.2)
    assert.is_true(os.time() - started <= 3)
    assert.same({ "_PURGE_QUEUE", "_PURGE_QUEUE", "_PURGE_QUEUE" }, errs)
    assert.truthy(log.find("closed with 3 message%(s%) not delivered$", "warn"), log.text())
  end)

  it("can run twice; every other method then raises", function()
    local p = H.producer(m)
    p:close()
    p:close()
    assert.is_true(p:is_closed())
    assert.matches("closed", tostring(p))
    assert.has_error(function() p:produce("t", "k", "v") end, "producer is closed")
    assert.has_error(function() p:poll() end, "producer is closed")
    assert.has_error(function() p:flush() end, "producer is closed")
    assert.has_error(function() p:queue_length() end, "producer is closed")
  end)

  it("raises a callback's error after closing", function()
    local p = H.producer(m, { on_delivery = function() error("late boom") end })
    assert.is_true(p:produce("close", "k", "v"))
    local ok, err = pcall(p.close, p, 10)
    assert.is_false(ok)
    assert.matches("late boom", err)
    assert.is_true(p:is_closed())
  end)

  -- Each raised error ends a serving call; the purge's reports were
  -- served one call each, with a 1 ms flush between calls, and close
  -- dropped (unserved, silently) whatever was left after one second:
  -- spec/core/random_spec.lua lost reports that way under load.
  it("serves every purged report, however many of the callbacks raise", function()
    local n, calls, keys = 1000, 0, {}
    local p = stuck({ on_delivery = function(err, r)
      calls = calls + 1
      keys[r.key] = (keys[r.key] or 0) + 1
      error("boom " .. r.key)
    end })
    for i = 1, n do assert.is_true(p:produce("t", tostring(i), "v")) end
    local ok, err = pcall(p.close, p, 0)
    assert.is_false(ok)
    assert.matches("boom %d+", err)
    assert.equal(n, calls)
    for i = 1, n do assert.equal(1, keys[tostring(i)]) end
  end)

  if _VERSION == "Lua 5.4" then
    it("runs at the end of a to-be-closed variable's scope", function()
      local delivered = 0
      local chunk = assert(load([[
        local producers, bootstraps, cb = ...
        local p <close> = producers.kafka.new{ bootstrap_servers = bootstraps, on_delivery = cb }
        assert(p:produce("tbc", "k", "v"))
        return p
      ]]))
      local p = chunk(producers, m:bootstraps(), function(err) if not err then delivered = delivered + 1 end end)
      assert.is_true(p:is_closed())
      assert.equal(1, delivered)
    end)
  end
end)

describe("a producer never closed", function()
  it("is collected without a crash, within a bound, and says what was lost", function()
    local out, ok = H.run_lua([[
      local producers = require("producers")
      local started = os.time()
      local p = producers.kafka.new{ bootstrap_servers = "127.0.0.1:1", gc_flush_timeout = 0.3,
                                     logger = function() end }
      for i = 1, 4 do assert(p:produce("t", "k", "v", { on_delivery = function() end })) end
      p = nil
      collectgarbage()
      collectgarbage()
      print("elapsed " .. (os.time() - started))
    ]])
    assert.is_true(ok, out)
    assert.matches("collected with 4 message%(s%) not delivered", out)
    local elapsed = tonumber(out:match("elapsed (%d+)"))
    assert.is_true(elapsed <= 3, out)
  end)

  it("is freed when the Lua state closes, delivering what it can", function()
    local m = producers.mock_cluster(1)
    local out, ok = H.run_lua(([[
      local producers = require("producers")
      local p = producers.kafka.new{ bootstrap_servers = %q }
      assert(p:produce("exit", "k", "v"))
      os.exit(0, true)
    ]]):format(m:bootstraps()))
    assert.is_true(ok, out)
    assert.not_matches("not delivered", out)
    m:close()
  end)
end)

describe("tostring", function()
  it("names the client and never shows a secret", function()
    local p = producers.kafka.new({ bootstrap_servers = "127.0.0.1:1", username = "alice",
                                    password = "s3cr3t-pw", logger = function() end })
    local s = tostring(p)
    assert.matches("^producers.kafka %(emulator%-producer#producer%-%d+%)$", s)
    assert.not_matches("s3cr3t", s)
    p:close(0)
  end)
end)

describe("queue_length", function()
  it("counts messages not yet delivered", function()
    local p = stuck()
    assert.equal(0, p:queue_length())
    assert.is_true(p:produce("t", "k", "v"))
    assert.equal(1, p:queue_length())
    p:close(0)
  end)
end)
