-- producers.ngx (stubbed ngx, spec/support/ngx_stub.lua) on librdkafka's
-- mock cluster: the close summary's log level (ERR when messages were
-- purged, INFO when all were delivered) and produce's pass-through of an
-- error object that is not a string (issue #26: the mutation sample's
-- survivors in lua/producers/ngx/instance.lua).
local stub = require("support.ngx_stub")

local MOCK = { ["test.mock.num.brokers"] = 1 }

describe("producers.ngx close summary and raised objects (stubbed ngx)", function()
  local S, kafka
  before_each(function()
    S = stub()
    kafka = require("producers.ngx")
  end)
  after_each(function() stub.leave(S, kafka.exit) end)

  it("logs the close line at INFO when everything was delivered", function()
    kafka.init{ config = MOCK }
    S.phase = "log"
    assert.is_true(kafka.produce("t", "k", "v"))
    assert.is_true(S.until_(function() return kafka.metrics().delivered == 1 end))
    S.phase = "exit_worker"
    kafka.exit()
    local line = S.find("producers: producer 'default' closed in worker 100: 1 delivered, 0 failed, 0 purged")
    assert.is_table(line)
    assert.equal(ngx.INFO, line[1])
  end)

  it("logs the close line at ERR when messages were purged", function()
    kafka.init{ bootstrap_servers = "127.0.0.1:1", close_timeout = 1.1, logger = function() end }
    assert.is_true(kafka.produce("t", "k", "v"))
    S.phase = "exit_worker"
    kafka.exit()
    local line = S.find("producers: producer 'default' closed in worker 100: 0 delivered, 0 failed, 1 purged")
    assert.is_table(line)
    assert.equal(ngx.ERR, line[1])
  end)

  it("passes an error object its json encoder raised (not a string) on unchanged", function()
    local boom = { reason = "boom" }
    local inst = kafka.init{ config = MOCK, json = function() error(boom) end }
    S.phase = "log"
    local ok, err = pcall(inst.produce, inst, "t", "k", { a = 1 })
    assert.is_false(ok)
    assert.equal(boom, err)
  end)
end)
