-- SASL_SSL against a real broker, configured exactly as the original
-- library did: username/password/sasl_mechanism, plus ssl.ca.location and
-- broker.address.family in config. Logins that work deliver; logins that
-- cannot work fail clearly, within a bound, with no secret in any log line.
local producers = require("producers")
local cjson = require("cjson")
local K = require("integration.kafka_helpers")

local TIMEOUT_MS = 3000          -- message.timeout.ms of the failing producers
local BOUND = TIMEOUT_MS / 1000 + 7   -- every report within this (seconds)

-- librdkafka debug contexts that touch the login: the config dump,
-- security (SASL/SSL), broker state and the protocol exchange
local DEBUG = "conf,security,broker,protocol,msg,metadata"

describe("SASL_SSL as the original library configured it #integration", function()
  local env
  setup(function() env = K.broker_env() end)

  -- The original library's configuration, over whatever the test adds.
  local function sasl_producer(user, password, mechanism, extra)
    local config = { ["ssl.ca.location"] = env.KAFKA_CA, ["broker.address.family"] = "v4" }
    for k, v in pairs(extra and extra.config or {}) do config[k] = v end
    local opts = {
      bootstrap_servers = env.KAFKA_SASL_BOOTSTRAP,
      username = user, password = password, sasl_mechanism = mechanism,
      config = config,
    }
    for k, v in pairs(extra or {}) do if k ~= "config" then opts[k] = v end end
    return producers.kafka.new(opts)
  end

  -- Producer options with a recording logger (debug level) and an
  -- on_delivery keeping every report, its err in r.err; returns the
  -- options, the log and the reports.
  local function observed(opts)
    local log, reports = K.recorder(), {}
    opts.logger, opts.log_level = log.fn, "debug"
    opts.on_delivery = function(err, r)
      r.err = err
      reports[#reports + 1] = r
    end
    return opts, log, reports
  end

  local function no_line_contains(log, secret)
    local leaks = log.containing(secret)
    assert.equal(0, #leaks, "secret in log lines:\n" .. table.concat(leaks, "\n"))
  end

  local function delivers(kind, user, password, mechanism)
    local topic = K.topic("sasl-" .. kind)
    K.create_topic(topic, 2)
    local opts, log, reports = observed{ config = { debug = DEBUG } }
    local p = sasl_producer(user, password, mechanism, opts)
    local sent = {
      { "k-table", { via = kind, n = 1 } },
      { "k-bytes", "\0raw\255bytes\n" },
      { "k-tomb", nil },
    }
    for i, s in ipairs(sent) do
      assert.is_true(p:produce(topic, s[1], s[2], { headers = { { "i", tostring(i) } } }))
    end
    assert.is_true(p:flush(30), log.tail(40))
    p:close()
    assert.equal(#sent, #reports)
    for _, r in ipairs(reports) do assert.is_nil(r.err, tostring(r.err) .. "\n" .. log.tail(40)) end
    assert.is_nil(log.find(".", "error"), log.text())
    -- the login really was SASL over TLS, with this mechanism
    assert.truthy(log.find("sasl_ssl://"), log.tail(40))
    no_line_contains(log, password)
    assert.falsy(tostring(p):find(password, 1, true))

    -- an independent client reads the same bytes at the reported offsets
    local at = K.assert_read_back(reports, K.kcat_read(topic, kind))
    local by_key = {}
    for _, rec in pairs(at) do by_key[rec.key] = rec end
    assert.same({ via = kind, n = 1 }, cjson.decode(by_key["k-table"].value))
    assert.equal("\0raw\255bytes\n", by_key["k-bytes"].value)
    assert.is_nil(by_key["k-tomb"].value)
    assert.same({ { "i", "3" } }, by_key["k-tomb"].headers)
  end

  K.it("PLAIN (alice): messages arrive, read back over SASL_SSL", function()
    delivers("plain", env.KAFKA_PLAIN_USER, env.KAFKA_PLAIN_PASSWORD, "PLAIN")
  end)

  -- librdkafka before 2.6.1 (Debian 12 has 2.0.2) repeats the client nonce
  -- in its SCRAM final message: Kafka 3.8.1-3.9 accept it, 4.x rejects the
  -- login ("invalid credentials"), so against 4.x only a librdkafka of
  -- 2.6.1 or later (scripts/test.sh's 2.8 leg) can pass it.
  local function version_below(v, want)
    local a, b, c = v:match("^(%d+)%.(%d+)%.(%d+)")
    local x, y, z = want:match("^(%d+)%.(%d+)%.(%d+)")
    a, b, c, x, y, z = tonumber(a), tonumber(b), tonumber(c), tonumber(x), tonumber(y), tonumber(z)
    if a ~= x then return a < x end
    if b ~= y then return b < y end
    return c < z
  end
  local ok, started = pcall(K.env)
  local scram_it = ok and (started.KAFKA_VERSION or ""):match("^4%.")
    and version_below(producers.librdkafka_version, "2.6.1") and pending or K.it
  scram_it("SCRAM-SHA-512 (bob): messages arrive, read back over SASL_SSL", function()
    delivers("scram", env.KAFKA_SCRAM_USER, env.KAFKA_SCRAM_PASSWORD, env.KAFKA_SCRAM_MECHANISM)
  end)

  -- A producer that cannot connect: every report fails within BOUND and the
  -- logger has an error line matching want (a plain substring) naming the
  -- cause. Returns the log, the reports and the seconds until the first
  -- such line and until the last report.
  local function fails_clearly(p, log, reports, want, n, cause)
    local topic = K.topic("never")
    local t0 = K.now()
    for i = 1, n do
      assert.is_true(p:produce(topic, "k" .. i, "v" .. i))
    end
    local line, t_line = K.wait_for(function()
      for _, l in ipairs(log.lines) do
        if l[1] == "error" and l[2]:find(want, 1, true) then return l end
      end
    end, BOUND, p)
    assert.truthy(line, ("no error line with %q within %ds; log:\n%s"):format(want, BOUND, log.text()))
    local ok = K.wait_for(function() return #reports == n end, BOUND - (K.now() - t0), p)
    local t_all = K.now() - t0
    assert.truthy(ok, ("%d of %d reports after %.1fs"):format(#reports, n, t_all))
    assert.is_true(t_all <= BOUND)
    for _, r in ipairs(reports) do
      -- librdkafka 2.0.2 keeps retrying a broker it cannot log in to (the
      -- error is not fatal), so each message fails by timing out; the
      -- report names the error that kept it from the broker
      assert.equal("_MSG_TIMED_OUT", r.error)
      assert.equal("Local: Message timed out (last error: ", r.err:sub(1, 38))
      if type(cause) == "table" then      -- { causes..., report = text the report names }
        assert.truthy(cause[r.cause], ("cause %s: %s"):format(tostring(r.cause), r.err))
        assert.truthy(r.err:find(cause.report, 1, true), r.err)
      else
        assert.equal(cause, r.cause)
        assert.truthy(r.err:find(want, 1, true), r.err)
      end
      assert.equal(topic, r.topic)
    end
    assert.equal(0, p:queue_length())
    -- close neither hangs nor loses anything more
    local c0 = K.now()
    p:close()
    assert.is_true(K.now() - c0 < 2)
    return t_line, t_all
  end

  local function wrong_password(mechanism, user, cause)
    local password = "wrong-Pw-" .. math.random(100000, 999999) .. "-zq"
    local opts, log, reports = observed{ config = { ["message.timeout.ms"] = TIMEOUT_MS, debug = DEBUG } }
    local p = sasl_producer(user, password, mechanism, opts)
    local t_line, t_all = fails_clearly(p, log, reports,
      "SASL authentication error: Authentication failed", 5, "_AUTHENTICATION")
    assert.truthy(log.find("SASL authentication error: Authentication failed.*%(_AUTHENTICATION%)$", "error"),
      log.text())
    assert.truthy(log.find(cause, "error"), log.text())
    assert.truthy(log.find("%(_ALL_BROKERS_DOWN%)$", "error"), log.text())
    assert.truthy(#log.lines > 20, "expected librdkafka debug lines")   -- debug was on
    assert.truthy(log.find("sasl.password = %[redacted%]"), "no config dump?\n" .. log.tail(20))
    no_line_contains(log, password)
    assert.falsy(tostring(p):find(password, 1, true))
    print(("\n  %s wrong password: first error after %.2fs, all reports after %.2fs (%d log lines, none with the password)")
      :format(mechanism, t_line, t_all, #log.lines))
  end

  K.it("PLAIN with a wrong password: an authentication error in the log, every report fails, no hang, no password in any line", function()
    wrong_password("PLAIN", env.KAFKA_PLAIN_USER, "Invalid username or password")
  end)

  K.it("SCRAM-SHA-512 with a wrong password: an authentication error in the log, every report fails, no hang, no password in any line", function()
    wrong_password(env.KAFKA_SCRAM_MECHANISM, env.KAFKA_SCRAM_USER,
      "invalid credentials with SASL mechanism SCRAM%-SHA%-512")
  end)

  K.it("closing a producer that cannot log in returns within its timeout; its messages are reported purged", function()
    local password = "wrong-Pw-" .. math.random(100000, 999999) .. "-zq"
    local opts, log, reports = observed{}    -- message.timeout.ms: librdkafka's default, 300 s
    local p = sasl_producer(env.KAFKA_PLAIN_USER, password, "PLAIN", opts)
    for i = 1, 4 do assert.is_true(p:produce(K.topic("never"), "k" .. i, "v" .. i)) end
    assert.truthy(K.wait_for(function() return log.find("%(_AUTHENTICATION%)$", "error") end, BOUND, p),
      log.text())
    local t0 = K.now()
    p:close(1)
    local took = K.now() - t0
    assert.is_true(took < 1 + 2, ("close(1) took %.2fs"):format(took))
    assert.equal(4, #reports)
    for _, r in ipairs(reports) do
      assert.equal("_PURGE_QUEUE", r.error)
      assert.equal("_AUTHENTICATION", r.cause)
      assert.matches("^Local: Purged in queue %(last error: .*SASL authentication error", r.err)
    end
    assert.truthy(log.find("closed with 4 message%(s%) not delivered$", "warn"), log.text())
    no_line_contains(log, password)
  end)

  K.it("a PLAINTEXT client on the SASL_SSL port: a transport error that suggests security.protocol, every report fails", function()
    local opts, log, reports = observed{
      bootstrap_servers = env.KAFKA_SASL_BOOTSTRAP,
      config = { ["broker.address.family"] = "v4", ["message.timeout.ms"] = TIMEOUT_MS },
    }
    local p = producers.kafka.new(opts)
    local t_line, t_all = fails_clearly(p, log, reports, "Disconnected while requesting ApiVersion", 3, "_TRANSPORT")
    assert.truthy(log.find("incorrect security%.protocol configuration.*%(_TRANSPORT%)$", "error"), log.text())
    print(("\n  PLAINTEXT on the SASL_SSL port: first error after %.2fs, all reports after %.2fs"):format(t_line, t_all))
  end)

  K.it("SASL_SSL without ssl.ca.location (the test CA is not trusted): a certificate error, every report fails", function()
    local password = env.KAFKA_PLAIN_PASSWORD
    local opts, log, reports = observed{
      bootstrap_servers = env.KAFKA_SASL_BOOTSTRAP,
      username = env.KAFKA_PLAIN_USER, password = password,
      config = { ["broker.address.family"] = "v4", ["message.timeout.ms"] = TIMEOUT_MS, debug = DEBUG },
    }
    local p = producers.kafka.new(opts)
    -- the report names the last error before its timeout: the handshake's
    -- failure (_SSL), or on a loaded machine the connection it was on
    -- timing out during the handshake (_TRANSPORT, "... SSL_HANDSHAKE");
    -- the log line above it is the certificate error either way
    local t_line, t_all = fails_clearly(p, log, reports, "SSL handshake failed", 3,
                                        { _SSL = true, _TRANSPORT = true, report = "SSL" })
    assert.truthy(log.find("certificate verify failed.*ssl%.ca%.location", "error"), log.text())
    no_line_contains(log, password)
    print(("\n  untrusted CA: first error after %.2fs, all reports after %.2fs"):format(t_line, t_all))
  end)
end)
