local producers = require("producers")
local kafka = producers.kafka

describe("producers.kafka.config", function()
  it("starts from the documented defaults", function()
    local conf = kafka.config({ bootstrap_servers = "127.0.0.1:9092" })
    assert.equal("gzip", conf["compression.type"])
    assert.equal("emulator-producer", conf["client.id"])
    assert.equal("PLAINTEXT", conf["security.protocol"])
    assert.equal("127.0.0.1:9092", conf["bootstrap.servers"])
    assert.equal(10, conf["linger.ms"])
    assert.equal("all", conf["acks"])
    assert.is_true(conf["enable.idempotence"])
  end)

  it("turns idempotence off when config says so", function()
    local conf = kafka.config({ bootstrap_servers = "b", config = { ["enable.idempotence"] = false } })
    assert.is_false(conf["enable.idempotence"])
  end)

  -- as Kafka's Java producer (3.2+) does: the default gives way to a
  -- setting librdkafka refuses beside it, so such configs stay valid
  it("leaves idempotence at librdkafka's default when config conflicts with it", function()
    for _, config in ipairs({
      { acks = 1 }, { acks = "0" }, { ["request.required.acks"] = 1 },
      { retries = 0 }, { ["message.send.max.retries"] = "0" },
      { ["max.in.flight"] = 10 }, { ["max.in.flight.requests.per.connection"] = "6" },
    }) do
      local conf = kafka.config({ bootstrap_servers = "b", config = config })
      local name = next(config)
      assert.is_nil(conf["enable.idempotence"], name)
      local p = kafka.new({ bootstrap_servers = "b", config = config })   -- librdkafka accepts it
      p:close(0)
    end
    for _, config in ipairs({ { acks = "all" }, { acks = -1 }, { retries = 3 }, { ["max.in.flight"] = 5 } }) do
      assert.is_true(kafka.config({ bootstrap_servers = "b", config = config })["enable.idempotence"], next(config))
    end
  end)

  it("keeps an explicit enable.idempotence = true, and librdkafka's error beside acks=1", function()
    assert.has_error(function()
      kafka.new({ bootstrap_servers = "b", config = { ["enable.idempotence"] = true, acks = 1 } })
    end, "config: `acks` must be set to `all` when `enable.idempotence` is true")
  end)

  it("selects SASL_SSL with PLAIN when a username and password are given", function()
    local conf = kafka.config({ bootstrap_servers = "b:9093", username = "u", password = "p" })
    assert.equal("SASL_SSL", conf["security.protocol"])
    assert.equal("PLAIN", conf["sasl.mechanisms"])
    assert.equal("u", conf["sasl.username"])
    assert.equal("p", conf["sasl.password"])
  end)

  it("takes a SCRAM mechanism", function()
    local conf = kafka.config({ bootstrap_servers = "b", username = "u", password = "p",
                                sasl_mechanism = "SCRAM-SHA-512" })
    assert.equal("SCRAM-SHA-512", conf["sasl.mechanisms"])
  end)

  it("applies config over the defaults and the security settings", function()
    local conf = kafka.config({ bootstrap_servers = "b", config = {
      ["compression.type"] = "lz4", ["linger.ms"] = 0, ["security.protocol"] = "SSL" } })
    assert.equal("lz4", conf["compression.type"])
    assert.equal(0, conf["linger.ms"])
    assert.equal("SSL", conf["security.protocol"])
  end)
end)

describe("producers.kafka.new", function()
  it("requires bootstrap_servers unless a mock cluster is asked for", function()
    assert.has_error(function() kafka.new({}) end, "producers.kafka.new: bootstrap_servers is required")
    local p = kafka.new({ config = { ["test.mock.num.brokers"] = 1 } })
    p:close()
  end)

  it("refuses a username without a password, and the reverse", function()
    assert.has_error(function() kafka.new({ bootstrap_servers = "b", username = "u" }) end,
      "producers.kafka.new: username and password must be given together")
    assert.has_error(function() kafka.new({ bootstrap_servers = "b", password = "p" }) end,
      "producers.kafka.new: username and password must be given together")
  end)

  it("refuses an unknown SASL mechanism", function()
    assert.has_error(function()
      kafka.new({ bootstrap_servers = "b", username = "u", password = "p", sasl_mechanism = "GSSAPI" })
    end, "producers.kafka.new: sasl_mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got 'GSSAPI'")
  end)

  it("names an unknown option and a mistyped one", function()
    assert.has_error(function() kafka.new({ bootstrap_server = "b" }) end,
      "producers.kafka.new: unknown option 'bootstrap_server' (did you mean 'bootstrap_servers'?)")
    assert.has_error(function() kafka.new({ bootstrap_servers = 9092 }) end,
      "producers.kafka.new: option 'bootstrap_servers' must be a string, got number")
    assert.has_error(function() kafka.new({ bootstrap_servers = "b", on_delivery = 1 }) end,
      "producers.kafka.new: option 'on_delivery' must be a function, got number")
    assert.has_error(function() kafka.new("b") end,
      "producers.kafka.new: expected a table of options, got string")
  end)

  it("names an unknown librdkafka property", function()
    assert.has_error(function()
      kafka.new({ bootstrap_servers = "b", config = { ["linger.msec"] = 5 } })
    end, "config: unknown property 'linger.msec' (did you mean 'linger.ms'?)")
  end)

  -- "FILE:LINE: " of the line after the caller's, as an error at it starts
  local function next_line()
    local info = debug.getinfo(2, "Sl")
    return ("%s:%d: "):format(info.short_src, info.currentline + 1)
  end

  it("points a bad property at the script line that called new", function()
    local at = next_line()
    local ok, err = pcall(function() kafka.new({ bootstrap_servers = "b", config = { ["linger.msec"] = 5 } }) end)
    assert.is_false(ok)
    assert.equal(at .. "config: unknown property 'linger.msec' (did you mean 'linger.ms'?)", err)
    at = next_line()
    ok, err = pcall(function() producers.new("kafka", { bootstrap_servers = "b", config = { ["compression.type"] = "zip" } }) end)
    assert.is_false(ok)
    assert.equal(at .. "config: invalid value for 'compression.type': Invalid value \"zip\" for configuration property"
      .. " \"compression.codec\"", err)
    at = next_line()
    ok, err = pcall(function() kafka.new({ ["bootstrap.servers"] = "b" }) end)
    assert.is_false(ok)
    assert.equal(at .. "producers.kafka.new: unknown option 'bootstrap.servers' (did you mean bootstrap_servers = ...,"
      .. ' or config = { ["bootstrap.servers"] = ... }?)', err)
  end)

  it("suggests the nearest property a producer takes, when one is near", function()
    local function refusal(name)
      local ok, err = producers.kafka.check({ bootstrap_servers = "b", config = { [name] = 1 } })
      assert.is_nil(ok)
      return err
    end
    assert.equal("config: unknown property 'linger_ms' (did you mean 'linger.ms'?)", refusal("linger_ms"))
    assert.equal("config: unknown property 'Linger.Ms' (did you mean 'linger.ms'?)", refusal("Linger.Ms"))
    assert.equal("config: unknown property 'compresion.type' (did you mean 'compression.type'?)",
      refusal("compresion.type"))
    assert.equal("config: unknown property 'message.timeout' (did you mean 'message.timeout.ms'?)",
      refusal("message.timeout"))
    assert.equal("config: unknown property 'sasl.pasword' (did you mean 'sasl.password'?)", refusal("sasl.pasword"))
    assert.equal("config: unknown property 'bogus'", refusal("bogus"))                 -- nothing near
    assert.equal("config: unknown property 'group.idd'", refusal("group.idd"))         -- a consumer's: not offered
  end)

  it("hints at the option or config for a dotted name among the options", function()
    assert.has_error(function() kafka.new({ ["bootstrap.servers"] = "b" }) end,
      "producers.kafka.new: unknown option 'bootstrap.servers' (did you mean bootstrap_servers = ...,"
      .. ' or config = { ["bootstrap.servers"] = ... }?)')
    assert.has_error(function() kafka.new({ bootstrap_servers = "b", ["linger.ms"] = 5 }) end,
      'producers.kafka.new: unknown option \'linger.ms\' (librdkafka\'s properties go in config = { ["linger.ms"] = ... })')
    assert.has_error(function() kafka.new({ bootstrap_servers = "b", on_deliver = print }) end,
      "producers.kafka.new: unknown option 'on_deliver' (did you mean 'on_delivery'?)")
    assert.has_error(function() kafka.new({ bootstrap_servers = "b", bogus = 1 }) end,
      "producers.kafka.new: unknown option 'bogus'")
  end)

  it("names a property with an invalid value and says why", function()
    assert.has_error(function()
      kafka.new({ bootstrap_servers = "b", config = { ["compression.type"] = "zip" } })
    end, "config: invalid value for 'compression.type': Invalid value \"zip\" for configuration property \"compression.codec\"")
    assert.has_error(function()
      kafka.new({ bootstrap_servers = "b", config = { ["linger.ms"] = {} } })
    end, "config: 'linger.ms' must be a string, number or boolean, got table")
  end)

  it("takes numbers and booleans as property values", function()
    local p = kafka.new({ bootstrap_servers = "b", config = {
      ["linger.ms"] = 2.5, ["enable.idempotence"] = true, ["batch.num.messages"] = 100 } })
    p:close()
  end)

  it("refuses a negative or NaN gc_flush_timeout, naming the option", function()
    assert.has_error(function() kafka.new({ bootstrap_servers = "b", gc_flush_timeout = -1 }) end,
      "producers.kafka.new: option 'gc_flush_timeout' must be a number of seconds >= 0, got -1")
    local ok, err = pcall(kafka.new, { bootstrap_servers = "b", gc_flush_timeout = 0 / 0 })
    assert.is_false(ok)
    assert.matches("^producers%.kafka%.new: option 'gc_flush_timeout' must be a number of seconds >= 0, got %-?nan$", err)
    local p = kafka.new({ bootstrap_servers = "b", gc_flush_timeout = 0 })
    p:close(0)
  end)

  it("refuses an unknown log level", function()
    assert.has_error(function() kafka.new({ bootstrap_servers = "b", log_level = "loud" }) end,
      "log_level: expected debug, info, warn or error, got loud")
  end)

  it("never puts a password in an error or in tostring", function()
    local ok, err = pcall(kafka.new, { bootstrap_servers = "b", username = "u",
      password = "hunter2-secret", config = { ["sasl.mechanisms"] = "NOPE" } })
    assert.is_false(ok)
    assert.not_matches("hunter2", err)
    ok, err = pcall(kafka.new, { bootstrap_servers = "b", config = { ["ssl.key.password"] = {} } })
    assert.is_false(ok)
    local p = kafka.new({ bootstrap_servers = "127.0.0.1:1", username = "u", password = "hunter2-secret",
                          config = { ["ssl.ca.location"] = "probe" } })
    assert.not_matches("hunter2", tostring(p))
    p:close(0)
  end)

  it("never puts a password in a log line, even with librdkafka's debug=all", function()
    local H = require("helpers")
    local log = H.recorder()
    local p = kafka.new({ bootstrap_servers = "127.0.0.1:1", username = "alice", password = "hunter2-pw",
                          log_level = "debug", logger = log.fn,
                          config = { debug = "all", ["message.timeout.ms"] = 300 } })
    assert.is_true(p:produce("t", "k", "v"))
    assert.is_true(p:flush(5))
    p:close(0)
    assert.truthy(log.find("sasl.password = %[redacted%]"), "librdkafka dumped its config")
    assert.is_true(#log.lines > 20)
    assert.not_matches("hunter2", log.text())
  end)

  it("hides a password wherever it shows up in a log line, not only where librdkafka redacts", function()
    -- the password is also the topic's name (and part of another one):
    -- librdkafka's lines and our own ("delivery failed: <topic> ...")
    -- quote topics as they are, so only the producer's redaction hides it
    local H = require("helpers")
    local log = H.recorder()
    local pw = "hunter2-pw-topic"
    local p = kafka.new({ bootstrap_servers = "127.0.0.1:1", username = "alice", password = pw,
                          log_level = "debug", logger = log.fn,
                          config = { debug = "topic,msg", ["message.timeout.ms"] = 300 } })
    assert.is_true(p:produce(pw, "k", "v"))
    assert.is_true(p:produce("x-" .. pw:sub(1, 8) .. "-y", "k", "v"))
    assert.is_true(p:flush(5))
    p:close(0)
    assert.truthy(log.find("^delivery failed: %*%*%* %[", "error"), log.text())
    assert.truthy(log.find("^delivery failed: x%-%*%*%*%-y %[", "error"), log.text())
    assert.truthy(log.find("^librdkafka [%w_]+: .*%*%*%*"), "librdkafka's own lines name the topic")
    assert.not_matches("hunter2", log.text())
  end)

  it("hides a password wherever it shows up in a client error and in a report's cause", function()
    -- a password that is also the broker's address: librdkafka's
    -- connection errors quote it ("sasl_ssl://127.0.0.1:1/bootstrap: ...")
    local errors, causes = {}, {}
    local p = kafka.new({ bootstrap_servers = "127.0.0.1:1", username = "alice", password = "127.0.0.1:1",
                          logger = function() end,
                          on_error = function(err) errors[#errors + 1] = tostring(err) end,
                          on_delivery = function(err, r) causes[#causes + 1] = tostring(err) .. " " .. tostring(r.cause) end,
                          config = { ["message.timeout.ms"] = 300 } })
    assert.is_true(p:produce("t", "k", "v"))
    assert.is_true(p:flush(5))
    p:close(0)
    assert.equal(1, #causes)
    local text = table.concat(errors, "\n") .. "\n" .. table.concat(causes, "\n")
    assert.matches("sasl_ssl://***/bootstrap: Connect to ipv4#*** failed", text, 1, true)
    assert.is_nil(text:find("127.0.0.1", 1, true), text)
  end)
end)
