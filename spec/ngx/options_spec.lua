-- producers.ngx's options (stubbed ngx; issue #26, a survivor of the
-- mutation check): check returns, and new raises, the whole message and
-- nothing else: no file and line of the module in front of it
-- (spec/ngx/module_spec.lua matches the messages' parts only).
local stub = require("support.ngx_stub")

describe("producers.ngx's options (stubbed ngx)", function()
  local S, kafka
  before_each(function()
    S = stub()
    kafka = require("producers.ngx")
  end)
  after_each(function() stub.leave(S, kafka.exit) end)

  local BAD = {
    { "h:1", "producers.ngx: expected a table of options, got string" },
    { { bootstrap_servers = "h:1", poll_interval = "fast" }, "producers.ngx: option 'poll_interval' must be a number, got string" },
    { { bootstrap_servers = "h:1", poll_interval = 0 }, "producers.ngx: option 'poll_interval' must be a number of seconds > 0, got 0" },
    { { bootstrap_servers = "h:1", close_timeout = -1 }, "producers.ngx: option 'close_timeout' must be a number of seconds > 0, got -1" },
    { { bootstrap_servers = "h:1", send_timeout = 1 / 0 }, "producers.ngx: option 'send_timeout' must be a number of seconds > 0, got inf" },
    { { bootstrap_servers = "h:1", max_reports = 0 }, "producers.ngx: option 'max_reports' must be an integer from 1 to 1000000, got 0" },
    { { bootstrap_servers = "h:1", max_reports = 1000001 },
      "producers.ngx: option 'max_reports' must be an integer from 1 to 1000000, got 1000001" },
    { { bootstrap_servers = "h:1", shared_dict = "nope" },
      "producers.ngx: option 'shared_dict': no lua_shared_dict named 'nope' (add `lua_shared_dict nope 1m;` to the http block)" },
    { { bootstrap_servers = "h:1", config = 5 }, "producers.ngx: option 'config' must be a table, got number" },
    { { bootstrap_servers = "h:1", close_timeout = 1 },
      "producers.ngx: option 'close_timeout' (1 s) must be longer than config's reconnect.backoff.max.ms (1000 ms), "
      .. "or a worker that leaves after a broker outage may not reconnect before it gives up" },
    { { bootstrap_servers = "h:1", on_delivery = 1 }, "producers.ngx: option 'on_delivery' must be a function, got number" },
  }

  for _, case in ipairs(BAD) do
    it("check returns, and new raises, exactly: " .. case[2], function()
      assert.same({ nil, case[2] }, { kafka.check(case[1]) })
      local ok, err = pcall(kafka.new, case[1])
      assert.is_false(ok)
      assert.equal(case[2], err)
    end)
  end

  it("takes the edges of the ranges", function()
    assert.is_true(kafka.check{ bootstrap_servers = "h:1", max_reports = 1, poll_interval = 0.001, send_timeout = 1e-3 })
    assert.is_true(kafka.check{ bootstrap_servers = "h:1", max_reports = 1000000, close_timeout = 1.001 })
  end)
end)

-- Found by the mutation check (issue #26): lua-resty-kafka's broker list
-- is checked whole before anything is made (not a string, not empty).
describe("producers.resty_kafka's broker list (stubbed ngx)", function()
  local S, kafka, producer
  before_each(function()
    S = stub()
    kafka = require("producers.ngx")
    producer = require("producers.resty_kafka")
    S.phase = "content"
  end)
  after_each(function() stub.leave(S, kafka.exit) end)

  it("refuses what is not a list of brokers, naming what it wants, and makes no producer", function()
    local want = "producers.resty_kafka: broker_list must be a list of { host = ..., port = ... }"
    for _, bad in ipairs({ "127.0.0.1:9092", {}, 42 }) do
      local ok, err = pcall(producer.new, producer, bad)
      assert.is_false(ok)
      assert.equal("string", type(err))
      assert.is_truthy(err:find(want, 1, true), err)
    end
    assert.equal(0, #S.timers)
  end)
end)
