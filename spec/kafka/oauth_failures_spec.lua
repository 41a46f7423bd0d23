-- Failing OAUTHBEARER token callbacks (issue #26, found by the mutation
-- check). One that quotes a secret: the reason of the failure goes to
-- on_error, or to the log without one; neither may carry a secret value
-- of the configuration (sasl.oauthbearer.config, any *password*), whole
-- or in part. One that raises an empty message or a non-string: a failed
-- refresh all the same, with a reason that says so. No broker: librdkafka
-- asks for the first token at creation, served by poll (as in
-- spec/kafka/oauthbearer_spec.lua).
local producers = require("producers")
local H = require("helpers")

local SECRET = "clientSecret=s3cr3t-Va1ue-0f-the-IdP"
local PASSWORD = "k3y-pa55w0rd-for-the-pem"

-- A producer whose token callback raises, quoting the whole
-- sasl.oauthbearer.config it is given and the first 12 bytes of the
-- ssl.key.password; on_error, when given, gets the errors. Serves the
-- first refresh; returns the error messages and the log's text.
local function refresh_failing(on_error)
  local errors, log, calls = {}, H.recorder(), 0
  local p = producers.kafka.new{
    bootstrap_servers = "127.0.0.1:1",
    log_level = "debug",
    logger = log.fn,
    on_error = on_error and function(e) errors[#errors + 1] = e.name .. " " .. e.message end or nil,
    config = { ["security.protocol"] = "SASL_PLAINTEXT", debug = "security,generic",
               ["sasl.oauthbearer.config"] = SECRET, ["ssl.key.password"] = PASSWORD },
    on_oauthbearer_token = function(config)
      calls = calls + 1
      error("the IdP refused " .. tostring(config) .. " and key " .. PASSWORD:sub(1, 12), 0)
    end,
  }
  local function failed() return #errors > 0 or log.find("token refresh failed") ~= nil end
  assert.is_true(H.wait_until(failed, 10, function() p:poll(0.05) end))
  p:poll(0.2)
  p:close(0)
  assert.is_true(calls >= 1)
  return errors, log.text()
end

local function assert_hidden(text)
  assert.is_nil(text:find(SECRET, 1, true), text)
  assert.is_nil(text:find("s3cr3t", 1, true), text)
  assert.is_nil(text:find(PASSWORD:sub(1, 12), 1, true), text)
end

describe("on_oauthbearer_token raising an error that quotes a secret", function()
  it("is reported to on_error with the secret hidden, and the log has none", function()
    local errors, log = refresh_failing(true)
    assert.matches("^_AUTHENTICATION token refresh failed: the IdP refused %*%*%* and key %*%*%*", errors[1])
    assert_hidden(table.concat(errors, "\n") .. "\n" .. log)
  end)

  it("is logged at error level with the secret hidden, without on_error", function()
    local errors, log = refresh_failing(false)
    assert.equal(0, #errors)
    assert.matches("error error: token refresh failed: the IdP refused %*%*%* and key %*%*%* %(_AUTHENTICATION%)", log)
    assert_hidden(log)
  end)
end)

describe("on_oauthbearer_token raising an empty error", function()
  it("is a failed refresh all the same, reported as such", function()
    for _, raised in ipairs({ "", false }) do
      local errors = {}
      local p = producers.kafka.new{
        bootstrap_servers = "127.0.0.1:1", logger = function() end,
        on_error = function(e) errors[#errors + 1] = e end,
        config = { ["security.protocol"] = "SASL_PLAINTEXT" },
        on_oauthbearer_token = function() error(raised, 0) end,
      }
      assert.is_true(H.wait_until(function() return #errors > 0 end, 10, function() p:poll(0.05) end))
      p:close(0)
      assert.equal("_AUTHENTICATION", errors[1].name)
      assert.equal(raised == "" and "token refresh failed: (empty error message)"
        or "token refresh failed: (error object is a boolean value)", errors[1].message)
    end
  end)
end)
