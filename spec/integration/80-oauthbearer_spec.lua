-- SASL_SSL with OAUTHBEARER against a real broker (scripts/kafka/broker.sh
-- enables Kafka's built-in validator of unsecured JWTs on its SASL_SSL
-- listener): tokens come from a Lua callback (on_oauthbearer_token). A
-- valid token delivers, a short-lived one is refreshed before it expires,
-- a failing callback or a token the broker rejects fails every message
-- with cause _AUTHENTICATION, and no token appears in any log line.
local producers = require("producers")
local cjson = require("cjson")
local K = require("integration.kafka_helpers")
local jwt = require("support.jwt")

local TIMEOUT_MS = 3000          -- message.timeout.ms of the failing producers
local BOUND = TIMEOUT_MS / 1000 + 7

describe("SASL_SSL with OAUTHBEARER tokens from Lua #integration", function()
  local env
  setup(function()
    env = K.broker_env()
    assert(env.KAFKA_OAUTHBEARER, "the broker has no OAUTHBEARER (env.sh from an older broker.sh?)")
  end)

  -- A producer on the SASL_SSL listener whose refreshes call token_fn,
  -- with a recording logger (librdkafka's security and broker lines too),
  -- on_error and on_delivery keeping what they get.
  local function oauth_producer(token_fn, config)
    local log, reports, errors = K.recorder(), {}, {}
    local conf = { ["ssl.ca.location"] = env.KAFKA_CA, ["broker.address.family"] = "v4",
                   debug = "security,broker,protocol" }
    for k, v in pairs(config or {}) do conf[k] = v end
    local p = producers.kafka.new{
      bootstrap_servers = env.KAFKA_SASL_BOOTSTRAP,
      on_oauthbearer_token = token_fn,
      logger = log.fn, log_level = "debug",
      on_error = function(e) errors[#errors + 1] = e end,
      on_delivery = function(err, r) r.err = err; reports[#reports + 1] = r end,
      config = conf,
    }
    return p, log, reports, errors
  end

  -- Neither the token nor its payload (nor 8 bytes of it) is in any line.
  local function no_token_in(log, token, payload)
    for _, secret in ipairs({ token, payload, payload:sub(1, 8), payload:sub(-8) }) do
      local leaks = log.containing(secret)
      assert.equal(0, #leaks, "token in log lines:\n" .. table.concat(leaks, "\n"))
    end
  end

  K.it("delivers with a valid unsecured JWT; kcat reads the messages back", function()
    local topic = K.topic("oauth")
    K.create_topic(topic, 2)
    local calls, token, payload = {}, nil, nil
    local p, log, reports, errors = oauth_producer(function(config)
      calls[#calls + 1] = config or "nil"
      local exp
      token, exp, payload = jwt.unsecured("carol", 3600)
      return token, exp, "carol"
    end)
    assert.is_true(p:produce(topic, "k-table", { via = "oauthbearer" }))
    assert.is_true(p:produce(topic, "k-bytes", "\0raw\255"))
    assert.is_true(p:flush(30), log.tail(40))
    local shown = tostring(p)
    p:close()
    assert.same({ "nil" }, calls)
    assert.equal(2, #reports)
    for _, r in ipairs(reports) do assert.is_nil(r.err, tostring(r.err) .. "\n" .. log.tail(40)) end
    assert.equal(0, #errors, errors[1] and errors[1].message)
    assert.truthy(log.find("sasl_ssl://"), log.tail(40))
    assert.truthy(log.find("OAUTHBEARER"), log.tail(40))
    no_token_in(log, token, payload)
    assert.falsy(shown:find(payload:sub(1, 8), 1, true))

    local at = K.assert_read_back(reports, K.kcat_read(topic, "plaintext"))
    local by_key = {}
    for _, rec in pairs(at) do by_key[rec.key] = rec end
    assert.same({ via = "oauthbearer" }, cjson.decode(by_key["k-table"].value))
    assert.equal("\0raw\255", by_key["k-bytes"].value)
  end)

  K.it("asks for a new token before the short-lived one expires, and goes on delivering", function()
    local topic = K.topic("oauth-refresh")
    K.create_topic(topic, 1)
    local calls, tokens = {}, {}
    local p, log, reports, errors = oauth_producer(function()
      local token, exp, payload = jwt.unsecured("carol", 5)
      calls[#calls + 1] = { at = K.now(), wall = os.time(), exp = exp }
      tokens[#tokens + 1] = { token, payload }
      return token, exp, "carol"
    end)
    assert.is_true(p:produce(topic, "before", "1"))
    assert.is_true(p:flush(30), log.tail(40))
    local again = K.wait_for(function() return #calls >= 2 end, 15, p)
    assert.truthy(again, ("%d call(s) in 15 s"):format(#calls))
    -- librdkafka refreshes at 80% of the lifetime (its timer ticks each second)
    assert.is_true(calls[2].wall * 1000 < calls[1].exp,
      ("second call at %d s, first token expired at %d ms"):format(calls[2].wall, calls[1].exp))
    assert.is_true(p:produce(topic, "after", "2"))
    assert.is_true(p:flush(30), log.tail(40))
    p:close()
    assert.equal(2, #reports)
    for _, r in ipairs(reports) do assert.is_nil(r.err, tostring(r.err)) end
    -- Kafka 4.x with librdkafka 2.8 now and then answers a connection's
    -- SaslHandshake with ILLEGAL_SASL_STATE around the token's expiry
    -- (2 of 5 clean-clone runs on 2026-12-06; the connection is made
    -- again and every message delivered; cause not found, see docs/
    -- oauthbearer.md): those are counted and shown, any other error fails.
    local transient = 0
    for _, e in ipairs(errors) do
      if e.message:find("Request not valid in current SASL state", 1, true) then
        transient = transient + 1
      else
        assert.equal(0, #errors, e.message)
      end
    end
    assert.is_true(transient <= 4, ("%d ILLEGAL_SASL_STATE errors"):format(transient))
    if transient > 0 then print(("\n  OAUTHBEARER: %d transient ILLEGAL_SASL_STATE error(s), messages delivered"):format(transient)) end
    for _, t in ipairs(tokens) do no_token_in(log, t[1], t[2]) end
    print(("\n  OAUTHBEARER: %d calls, the second %.1f s after the first (5 s tokens)")
      :format(#calls, calls[2].at - calls[1].at))
    assert.equal(2, #K.kcat_read(topic, "plaintext"))
  end)

  -- Every message of n fails by timing out within BOUND, naming cause.
  local function all_fail(p, reports, n, cause)
    local topic = K.topic("never")
    for i = 1, n do assert.is_true(p:produce(topic, "k" .. i, "v" .. i)) end
    assert.truthy(K.wait_for(function() return #reports == n end, BOUND, p),
      ("%d of %d reports"):format(#reports, n))
    for _, r in ipairs(reports) do
      assert.equal("_MSG_TIMED_OUT", r.error)
      assert.equal(cause, r.cause)
    end
  end

  K.it("a callback that raises: 'token refresh failed' through on_error, every message fails with cause _AUTHENTICATION", function()
    local calls = 0
    local p, log, reports, errors = oauth_producer(function()
      calls = calls + 1
      error("token service unreachable")
    end, { ["message.timeout.ms"] = TIMEOUT_MS })
    all_fail(p, reports, 3, "_AUTHENTICATION")
    p:close()
    assert.equal(1, calls)
    assert.equal(1, #errors, log.tail(20))
    assert.matches("^token refresh failed: .*80%-oauthbearer_spec%.lua:%d+: token service unreachable$",
      errors[1].message)
    assert.equal("_AUTHENTICATION", errors[1].name)
    assert.matches("^Local: Message timed out %(last error: token refresh failed: .*token service unreachable%)$",
      reports[1].err)
    -- no broker was asked: librdkafka connects only once it has a token
    assert.is_nil(log.find("sasl_ssl://.*Connected"), log.tail(20))
  end)

  K.it("a token the broker rejects: an authentication error, every message fails, no token in any line", function()
    -- expired for the broker (exp in the JWT), not for librdkafka (lifetime_ms)
    local token, _, payload = jwt.unsecured("carol", -60)
    local p, log, reports, errors = oauth_producer(function()
      return token, (os.time() + 3600) * 1000, "carol"
    end, { ["message.timeout.ms"] = TIMEOUT_MS })
    all_fail(p, reports, 3, "_AUTHENTICATION")
    p:close()
    assert.truthy(#errors > 0)
    assert.equal("_AUTHENTICATION", errors[1].name)
    assert.matches("SASL authentication error", errors[1].message)
    no_token_in(log, token, payload)
    for _, e in ipairs(errors) do assert.falsy(e.message:find(payload:sub(1, 8), 1, true), e.message) end
    for _, r in ipairs(reports) do assert.falsy(r.err:find(payload:sub(1, 8), 1, true), r.err) end
  end)
end)
