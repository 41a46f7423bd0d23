-- event_fd: event loops wait on a descriptor instead of polling on a timer.
local producers = require("producers")
local H = require("helpers")
local has_luv, uv = pcall(require, "luv")

describe("event_fd #eventloop", function()
  local m
  setup(function() m = producers.mock_cluster(1) end)
  teardown(function() m:close() end)

  it("returns one descriptor per producer, refused after close", function()
    local p = H.producer(m)
    local fd = p:event_fd()
    assert.is_number(fd)
    assert.equal(fd, p:event_fd())
    p:close()
    assert.has_error(function() p:event_fd() end, "producer is closed")
  end)

  local it_luv = has_luv and it or pending
  it_luv("wakes a luv loop when reports wait; poll(0) serves them; no busy loop", function()
    local n, delivered, wakeups = 200, 0, 0
    local p = H.producer(m, { on_delivery = function(err) if not err then delivered = delivered + 1 end end })
    local poller = uv.new_poll(p:event_fd())
    local guard = uv.new_timer()
    local function finish()
      poller:stop(); poller:close()
      guard:stop(); guard:close()
    end
    poller:start("r", function()
      wakeups = wakeups + 1
      p:poll(0)
      if delivered == n then finish() end
    end)
    guard:start(10000, 0, finish)     -- a bound, not a wait: the loop ends as soon as all are served
    for i = 1, n do assert.is_true(p:produce("evfd", "k" .. i % 10, { i = i })) end
    uv.run()
    assert.equal(n, delivered)
    assert.is_true(wakeups >= 1)
    assert.is_true(wakeups <= n, "woken " .. wakeups .. " times")
    assert.equal(0, p:queue_length())
    -- one more report, served by a poll that waits: it arrives while the
    -- queue is empty, so the descriptor is readable with nothing to serve
    assert.is_true(p:produce("evfd", "last", "v"))
    assert.equal(1, p:poll(5))
    assert.equal(n + 1, delivered)
    -- nothing waits now: the loop goes idle. At most one more wake-up
    -- (a report that arrived while a poll served, as this one did),
    -- whose poll finds nothing; then none, turn after turn (a busy loop
    -- wakes on every turn)
    local idle, found = 0, 0
    poller = uv.new_poll(p:event_fd())
    poller:start("r", function()
      idle = idle + 1
      found = found + p:poll(0)
    end)
    for _ = 1, 20 do uv.run("nowait") end
    local first = idle
    for _ = 1, 20 do uv.run("nowait") end
    poller:stop(); poller:close(); uv.run("nowait")
    assert.is_true(first <= 1, "woken " .. first .. " times with nothing to serve")
    assert.equal(first, idle, "woken again after an empty poll")
    assert.equal(0, found)
    p:close()
  end)

  it_luv("stays readable after a callback raised, so the rest are served", function()
    local served = {}
    local p = H.producer(m, { on_delivery = function(_, r)
      served[#served + 1] = r.value
      if r.value == "2" then error("boom") end
    end, config = { ["linger.ms"] = 50 } })
    local poller = uv.new_poll(p:event_fd())
    local guard = uv.new_timer()
    local errors = 0
    local function finish()
      poller:stop(); poller:close()
      guard:stop(); guard:close()
    end
    poller:start("r", function()
      local ok = pcall(p.poll, p, 0)
      if not ok then errors = errors + 1 end
      if #served == 3 then finish() end
    end)
    guard:start(10000, 0, finish)
    for i = 1, 3 do assert.is_true(p:produce("evfd2", "same-key", tostring(i))) end
    uv.run()
    assert.same({ "1", "2", "3" }, served)
    assert.equal(1, errors)
    p:close()
  end)
end)
