-- producers.ngx's backend option (issue #23), stubbed ngx and no server:
-- "kafka" (the default) or "nats", which hands the rest of the options to
-- producers.nats (its checks, its words); a NATS producer that cannot
-- connect makes init raise, naming the backend and the error, and starts
-- nothing. spec/nats/ngx_spec.lua runs the backend in a real nginx
-- against a real nats-server.
local stub = require("support.ngx_stub")
local producers = require("producers")

local it_nats = producers.nats.available and it or pending

describe("producers.ngx's backend option (stubbed ngx)", function()
  local S, ngx_producers
  before_each(function()
    S = stub()
    ngx_producers = require("producers.ngx")
  end)
  after_each(function() stub.leave(S, ngx_producers.exit) end)

  it("is kafka by default and takes kafka and nats; check and new refuse any other, exactly", function()
    assert.equal("kafka", ngx_producers.DEFAULTS.backend)
    assert.is_true(ngx_producers.check{ bootstrap_servers = "h:1" })
    assert.is_true(ngx_producers.check{ backend = "kafka", bootstrap_servers = "h:1" })
    for _, case in ipairs({
      { { backend = "rabbit", bootstrap_servers = "h:1" }, "producers.ngx: option 'backend' must be 'kafka' or 'nats', got 'rabbit'" },
      { { backend = 5, bootstrap_servers = "h:1" }, "producers.ngx: option 'backend' must be a string, got number" },
    }) do
      assert.same({ nil, case[2] }, { ngx_producers.check(case[1]) })
      local ok, err = pcall(ngx_producers.new, case[1])
      assert.is_false(ok)
      assert.equal(case[2], err)
    end
    assert.equal(0, #S.timers)
  end)

  it_nats("hands the other options to producers.nats: its checks, no librdkafka config, no Kafka backoff rule", function()
    local url = "nats://127.0.0.1:1"
    assert.is_true(ngx_producers.check{ backend = "nats", servers = url, shared_dict = "producers" })
    -- Kafka's close_timeout > reconnect.backoff.max.ms rule is about librdkafka
    assert.is_true(ngx_producers.check{ backend = "nats", servers = url, close_timeout = 0.5 })
    assert.same({ nil, "producers.ngx: producers.nats.new: unknown option 'bootstrap_servers' (did you mean 'servers'?)" },
      { ngx_producers.check{ backend = "nats", bootstrap_servers = "h:1" } })
    assert.same({ nil, "producers.ngx: producers.nats.new: option 'config' is Kafka-only (docs/nats.md)" },
      { ngx_producers.check{ backend = "nats", servers = url, config = {} } })
    -- and the Kafka backend keeps its own words for a NATS option
    local ok, err = ngx_producers.check{ servers = url }
    assert.is_nil(ok)
    assert.truthy(err:find("^producers%.ngx: "), err)
    assert.truthy(err:find("servers", 1, true), err)
  end)

  it_nats("makes init raise when the NATS producer cannot connect, naming backend and error, and starts nothing", function()
    local ok, err = pcall(ngx_producers.init, { backend = "nats", servers = "nats://127.0.0.1:1", connect_timeout = 0.2 })
    assert.is_false(ok)
    assert.truthy(err:find("^producers%.ngx: cannot make the nats producer: .*%(_NO_SERVER%)$"), err)
    assert.equal(0, #S.timers)
    assert.is_nil(ngx_producers.producer())
    local produced, message, name = ngx_producers.produce("orders.eu", "k", "v")
    assert.same({ nil, "_STATE" }, { produced, name })
    assert.truthy(message:find("no producer in this worker", 1, true), message)
  end)
end)
