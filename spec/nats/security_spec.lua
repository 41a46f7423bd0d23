-- The NATS backend's connections (issue #23): user and password, a
-- token, TLS with the CA (tls:// URL), and what a wrong credential, an
-- unknown CA or no server gives: new returns nil, message, name, error
-- object, the message naming the server and the reason and never a
-- secret. Servers of its own (N.own(2)); read back with nats-py.
local N = require("support.nats")
local producers = require("producers")

if not producers.nats.available then
  describe("producers.nats #nats_unit", function() pending("built without NATS (no libnats)") end)
  return
end

describe("producers.nats connections #nats_unit", function()
  local env

  lazy_setup(function()
    N.own(2)
    env = N.start()
  end)

  lazy_teardown(function()
    N.stop()
  end)

  -- Produces one message through p to subject and reads it back on kind.
  local function round_trip(p, kind, opts)
    local stream = N.stream("SEC")
    N.create_stream(stream, { "sec." .. stream .. ".>" }, nil, { kind = kind, token = opts and opts.token })
    local got
    assert.is_true(p:produce("sec." .. stream .. ".x", "k", "secured", { on_delivery = function(err, r) got = { err, r } end }))
    assert.is_true(p:flush(10))
    assert.is_nil(got[1])
    assert.are.equal(stream, got[2].stream)
    local recs = N.read(stream, { kind = kind, token = opts and opts.token })
    assert.are.same({ "secured", "k" }, { recs[1].value, recs[1].headers["Producers-Key"] })
    p:close()
  end

  local function refused(opts, name, secret)
    local p, msg, got_name, err = producers.nats.new(opts)
    assert.is_nil(p)
    assert.are.equal(name, got_name)
    assert.are.equal(name, err.name)
    assert.are.equal(msg, err.message)
    if secret then assert.is_nil(msg:find(secret, 1, true), msg) end
    return msg
  end

  it("connects with user and password, and refuses wrong ones without showing them", N.with_logs(function()
    round_trip(assert(producers.nats.new({ servers = env.NATS_AUTH_URL, user = env.NATS_USER, password = env.NATS_PASSWORD })), "auth")
    local msg = refused({ servers = env.NATS_AUTH_URL, user = env.NATS_USER, password = "wrong-secret-1" },
      "_AUTHENTICATION", "wrong-secret-1")
    assert.matches("cannot connect to " .. env.NATS_AUTH_URL .. ": ", msg, 1, true)
    assert.matches("Authorization Violation", msg, 1, true)
    refused({ servers = env.NATS_AUTH_URL }, "_AUTHENTICATION")
    -- credentials in the URL are not shown either
    local url = env.NATS_AUTH_URL:gsub("^nats://", "nats://" .. env.NATS_USER .. ":wrong-secret-2@")
    msg = refused({ servers = url }, "_AUTHENTICATION", "wrong-secret-2")
    assert.matches("nats://***@127.0.0.1", msg, 1, true)
  end))

  it("connects over TLS with the CA, and refuses without it", N.with_logs(function()
    round_trip(assert(producers.nats.new({ servers = env.NATS_TLS_URL, ca = env.NATS_CA,
      user = env.NATS_USER, password = env.NATS_PASSWORD })), "tls")
    refused({ servers = env.NATS_TLS_URL, user = env.NATS_USER, password = env.NATS_PASSWORD }, "_SSL", env.NATS_PASSWORD)
    refused({ servers = env.NATS_TLS_URL, ca = env.NATS_CA, user = env.NATS_USER, password = "wrong-secret-3" },
      "_AUTHENTICATION", "wrong-secret-3")
  end))

  it("says when no server listens", N.with_logs(function()
    local url = "nats://127.0.0.1:" .. (N.port(env.NATS_URL) + 7)
    local msg = refused({ servers = url, connect_timeout = 1 }, "_NO_SERVER")
    assert.matches("cannot connect to " .. url, msg, 1, true)
  end))

  it("connects with a token, and refuses a wrong one", N.with_logs(function()
    N.stop()
    env = N.start("--token", "token-secret-4")
    round_trip(assert(producers.nats.new({ servers = env.NATS_AUTH_URL, token = "token-secret-4" })), "auth",
      { token = "token-secret-4" })
    refused({ servers = env.NATS_AUTH_URL, token = "wrong-token-5" }, "_AUTHENTICATION", "wrong-token-5")
    assert.has_error(function() producers.nats.new({ servers = env.NATS_AUTH_URL, token = "t", user = "u", password = "p" }) end,
      "producers.nats.new: token and user/password cannot be given together")
  end))
end)
