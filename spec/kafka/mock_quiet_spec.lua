-- producers.mock_cluster's own librdkafka handle (src/kafka/mock.c) keeps
-- librdkafka's log lines off the process's stderr: a program that starts
-- and closes a mock cluster writes nothing there (issue #26: the
-- mutation sample's survivor that drops its rd_kafka_conf_set_log_cb).
local child = require("support.child")

describe("producers.mock_cluster", function()
  it("writes nothing to stderr while it starts and closes", function()
    local c = child.start{ stdin = "true", code = [[
      local producers = require("producers")
      local m = producers.mock_cluster(3)
      assert(m:bootstraps():find(":"))
      m:create_topic("t", 2, 1)
      m:broker_down(1)
      m:broker_up(1)
      m:close()
      print("done")
    ]] }
    local status = c:wait(20)
    local out, err = c:stdout(), c:stderr()
    c:cleanup()
    assert.equal(0, status, err)
    assert.equal("done\n", out)
    assert.equal("", err)
  end)
end)
