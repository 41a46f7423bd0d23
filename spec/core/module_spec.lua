local producers = require("producers")

describe("producers", function()
  it("has a version and librdkafka's", function()
    assert.matches("^%d+%.%d+%.%d+$", producers.version)
    assert.matches("^%d+%.%d+%.%d+", producers.librdkafka_version)
  end)

  describe("new", function()
    local m
    setup(function() m = producers.mock_cluster(1) end)
    teardown(function() m:close() end)

    it("makes a producer of a registered kind", function()
      local p = producers.new("kafka", { bootstrap_servers = m:bootstraps() })
      assert.matches("^producers.kafka", tostring(p))
      p:close()
      local mem = producers.new("memory", {})
      assert.equal("producers.memory (memory)", tostring(mem))
    end)

    it("names the unknown kind and the known ones", function()
      assert.has_error(function() producers.new("rabbit", {}) end,
        "producers.new: unknown kind 'rabbit' (known: kafka, memory, nats)")   -- nats: issue #23
    end)
  end)

  describe("register", function()
    it("adds a backend that implements the interface", function()
      local Echo = producers.BaseProducer.extend("echo")
      function Echo.new() return setmetatable({ name = "e", sent = {} }, Echo) end
      function Echo:produce(topic, key, value) self.sent[#self.sent + 1] = { topic, key, value }; return true end
      function Echo:poll() return 0 end
      function Echo:flush() return true end
      function Echo:close() end
      producers.register("echo", Echo)
      local p = producers.new("echo")
      assert.is_true(p:produce("t", "k", "v"))
      assert.same({ { "t", "k", "v" } }, p.sent)
    end)

    it("refuses a class that misses a method", function()
      local Half = producers.BaseProducer.extend("half")
      function Half.new() end
      function Half:produce() end
      assert.has_error(function() producers.register("half", Half) end,
        "register: class for 'half' does not implement poll")
    end)

    it("checks the kafka and memory backends like any other", function()
      assert.has_no.errors(function()
        producers.BaseProducer.check(producers.kafka, "kafka")
        producers.BaseProducer.check(producers.memory, "memory")
      end)
    end)
  end)

  describe("BaseProducer", function()
    it("raises for a method a backend left out", function()
      local Lazy = producers.BaseProducer.extend("lazy")
      local p = setmetatable({ name = "l" }, Lazy)
      assert.has_error(function() p:flush() end, "producers.lazy (l): flush is not implemented")
    end)
  end)

  describe("producers.core (internal)", function()
    local core = require("producers.core")

    it("gives C's log level names, lowest first (core.log_levels)", function()
      assert.same({ "debug", "info", "warn", "error" }, core.log_levels)
    end)

    it("keeps its test hooks in core.testing, apart from what backends use", function()
      assert.is_function(core.testing.fatal_error)
      assert.is_nil(core.test_fatal_error)
      assert.is_function(core.json_decode)        -- producers-cat decodes with it
    end)
  end)
end)
