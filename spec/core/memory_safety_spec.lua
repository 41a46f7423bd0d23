-- Memory safety of the producing paths, checked by valgrind, and the
-- registry refs our callbacks use.
local producers = require("producers")
local H = require("helpers")

local refs = H.registry_refs

local function callback_refs()
  return refs(function(v) return type(v) == "function" end)
end

-- Refs to strings of at least 1 KiB: the large values lent to librdkafka.
local function lent_refs()
  return refs(function(v) return type(v) == "string" and #v >= 1024 end)
end

-- A producer whose messages stay queued: nothing listens on port 1.
local function stuck_producer(opts)
  opts = opts or {}
  opts.bootstrap_servers, opts.logger = "127.0.0.1:1", function() end
  return producers.kafka.new(opts)
end

-- Produces value (opts) on a stuck producer, calls queued(), then drops the
-- producer without closing it and collects it.
local function produce_and_drop(value, opts, queued)
  local p = stuck_producer{ gc_flush_timeout = 0 }
  assert.is_true(p:produce("refs", "k", value, opts))
  if queued then queued() end
  p = nil
  collectgarbage()
  collectgarbage()
end

describe("registry refs", function()
  it("are all released: served, failed, purged, collected", function()
    local m = producers.mock_cluster(1)
    collectgarbage()
    local before = callback_refs()
    local p = producers.kafka.new{ bootstrap_servers = m:bootstraps(), on_delivery = function() end }
    for i = 1, 50 do assert.is_true(p:produce("refs", "k", "v", { on_delivery = function() end })) end
    assert.has_error(function() p:produce("refs", "k", { f = print }, { on_delivery = function() end }) end,
      "value: cannot encode table as JSON: Cannot serialise function: type not supported")
    assert.is_true(p:flush(10))
    p:close()
    local stuck = stuck_producer()
    for i = 1, 5 do assert.is_true(stuck:produce("refs", "k", "v", { on_delivery = function() end })) end
    stuck:close(0)
    produce_and_drop("v", { on_delivery = function() end })
    assert.equal(before, callback_refs())
    m:close()
  end)

  it("are released when the callbacks holding them raise, and when a logger raises", function()
    local m = producers.mock_cluster(1)
    local big = string.rep("r", 2048)
    collectgarbage()
    local callbacks, lent = callback_refs(), lent_refs()
    local p = producers.kafka.new{ bootstrap_servers = m:bootstraps(), log_level = "debug",
                                   logger = function(_, message)
                                     if message:find("delivered to") then error("logger boom") end
                                   end }
    for i = 1, 10 do
      -- odd: its own callback, which raises; even: the default report, whose logger raises
      local opts = i % 2 == 1 and { on_delivery = function() error("boom " .. i) end } or nil
      assert.is_true(p:produce("raising", "k", i <= 5 and big .. i or "v", opts))
    end
    local raised = 0
    H.wait_until(function()
      local ok, err = pcall(p.flush, p, 0.1)
      if not ok then
        raised = raised + 1
        assert.matches("boom", err)
      end
      return ok and p:queue_length() == 0
    end, 10)
    assert.equal(10, raised)                     -- every report raised once, none twice
    assert.equal(lent, lent_refs())
    p:close()                                    -- lets go of its logger
    assert.equal(callbacks, callback_refs())
    m:close()
  end)

  it("keep a large value until its report, then let it go: served, failed, purged, collected", function()
    local m = producers.mock_cluster(1)
    local big = string.rep("v", 4096)
    collectgarbage()
    local before = lent_refs()
    local p = producers.kafka.new{ bootstrap_servers = m:bootstraps(), on_delivery = function() end,
                                   config = { ["message.max.bytes"] = 10000 } }
    for i = 1, 20 do
      assert.is_true(p:produce("lent", "k", big .. i, i % 2 == 0 and { on_delivery = function() end } or nil))
    end
    local ok, _, code = p:produce("lent", "k", string.rep("x", 20000), { on_delivery = function() end })
    assert.is_nil(ok)
    assert.equal("MSG_SIZE_TOO_LARGE", code)                           -- refused at once: let go
    assert.is_true(p:flush(10))
    assert.equal(before, lent_refs())
    p:close()

    local stuck = stuck_producer()
    for i = 1, 5 do assert.is_true(stuck:produce("lent", "k", big .. i)) end
    assert.is_true(stuck:produce("lent", "k", string.rep("s", 1023)))  -- copied: no ref
    assert.equal(before + 5, lent_refs())                              -- queued: kept
    stuck:close(0)                                                     -- purged: let go
    assert.equal(before, lent_refs())

    produce_and_drop(big .. "dropped", nil, function() assert.equal(before + 1, lent_refs()) end)
    assert.equal(before, lent_refs())
    m:close()
  end)
end)

describe("valgrind #valgrind", function()
  it("finds no invalid access and no leak in every producing path", function()
    local out, ok, code, report = H.valgrind("spec/support/leakcheck.lua")
    assert.matches("leakcheck: 942 delivered", out)
    assert.is_true(ok, ("valgrind exit %s\n%s\n%s"):format(tostring(code), out, report))
  end)
end)
