-- The NATS backend's connections (issue #23): user and password, a
-- token, an nkey user (its seed file), a .creds file (decentralized JWT
-- auth), TLS with the CA (tls:// URL), and what a wrong credential, a
-- missing file, an unknown CA or no server gives: new returns nil,
-- message, name, error object, the message naming the server and the
-- reason and never a secret (no password, token, seed or JWT, nor in the
-- logger's lines or the servers' logs). Servers of its own (N.own(2),
-- throwaway keys made by server.sh start); read back with nats-py, which
-- authenticates the same way.
local N = require("support.nats")
local H = require("helpers")
local S = require("support.spool")
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

  -- Produces one message through p to subject and reads it back on kind
  -- (opts: how read.py authenticates there, as N.connection takes them).
  local function round_trip(p, kind, opts)
    local stream = N.stream("SEC")
    opts = setmetatable({ kind = kind }, { __index = opts })
    N.create_stream(stream, { "sec." .. stream .. ".>" }, nil, opts)
    local got
    assert.is_true(p:produce("sec." .. stream .. ".x", "k", "secured", { on_delivery = function(err, r) got = { err, r } end }))
    assert.is_true(p:flush(10))
    assert.is_nil(got[1])
    assert.are.equal(stream, got[2].stream)
    local recs = N.read(stream, opts)
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

  -- The secrets of a seed or .creds file: each base32 or base64url run
  -- of 20 characters or more (a seed, a JWT).
  local function secrets_of(path)
    local found = {}
    for run in assert(H.read(path)):gmatch("[%w_%-%.]+") do
      if #run >= 20 then found[#found + 1] = run end
    end
    assert.is_true(#found > 0, path)
    return found
  end

  -- refused(), with a logger: neither the message, nor the logger's
  -- lines, nor the servers' logs hold any of the secrets of files.
  local function refused_keeping(opts, name, files)
    local lines = {}
    opts.logger = function(level, line) lines[#lines + 1] = tostring(level) .. " " .. tostring(line) end
    opts.log_level = "debug"
    local msg = refused(opts, name)
    local seen = msg .. "\n" .. table.concat(lines, "\n") .. "\n" .. N.logs(200)
    for _, file in ipairs(files) do
      for _, secret in ipairs(secrets_of(file)) do
        assert.is_nil(seen:find(secret, 1, true), "a secret of " .. file .. " shown")
      end
    end
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

  it("reports a publish the server does not permit (a Permissions Violation) as _AUTHENTICATION once; a spool forgets its record", N.with_logs(function()
    local dir = S.tmpdir()
    finally(function() S.rm(dir) end)
    for _, spool in ipairs({ false, { dir = dir } }) do
      local errors, got = {}, {}
      local p = assert(producers.nats.new({ servers = env.NATS_AUTH_URL, user = env.NATS_USER,
        password = env.NATS_PASSWORD, ack_timeout = 0.5, spool = spool or nil,
        on_error = function(err) errors[#errors + 1] = err end }))
      assert.is_true(p:produce("denied.x", "k", "v", { on_delivery = function(err, r) got[#got + 1] = { err, r } end }))
      assert.is_true(p:flush(10))
      assert.are.equal(1, #got)
      local r = got[1][2]
      assert.are.same({ "_AUTHENTICATION", "_AUTHENTICATION" }, { r.err_name, r.error_object.name })
      assert.is_false(r.error_object.retriable)
      assert.matches("publish to 'denied.x' not permitted", tostring(got[1][1]), 1, true)
      assert.are.equal("_AUTHENTICATION", errors[1].name)
      assert.matches("Permissions Violation", errors[1].message, 1, true)
      if spool then
        assert.are.equal(0, p:metrics().spool.records)
        assert.are.equal(0, p:metrics().spool.resent)
      end
      p:close()
    end
    local again = assert(producers.nats.new({ servers = env.NATS_AUTH_URL, user = env.NATS_USER,
      password = env.NATS_PASSWORD, spool = { dir = dir } }))
    assert.are.equal(0, again:queue_length())      -- acked as failed: nothing to send again
    again:close()
  end))

  it("connects over TLS with the CA, and refuses without it", N.with_logs(function()
    round_trip(assert(producers.nats.new({ servers = env.NATS_TLS_URL, ca = env.NATS_CA,
      user = env.NATS_USER, password = env.NATS_PASSWORD })), "tls")
    refused({ servers = env.NATS_TLS_URL, user = env.NATS_USER, password = env.NATS_PASSWORD }, "_SSL", env.NATS_PASSWORD)
    refused({ servers = env.NATS_TLS_URL, ca = env.NATS_CA, user = env.NATS_USER, password = "wrong-secret-3" },
      "_AUTHENTICATION", "wrong-secret-3")
  end))

  it("connects as an nkey user (its public key, its seed file), over TLS too", N.with_logs(function()
    local nkey = { nkey_seed = env.NATS_NKEY_SEED_FILE }
    round_trip(assert(producers.nats.new({ servers = env.NATS_AUTH_URL, nkey = env.NATS_NKEY,
      nkey_seed = env.NATS_NKEY_SEED_FILE })), "auth", nkey)
    round_trip(assert(producers.nats.new({ servers = env.NATS_TLS_URL, ca = env.NATS_CA, nkey = env.NATS_NKEY,
      nkey_seed = env.NATS_NKEY_SEED_FILE })), "tls", nkey)
  end))

  it("refuses another user's seed for the nkey, naming the cause and no seed", N.with_logs(function()
    local msg = refused_keeping({ servers = env.NATS_AUTH_URL, nkey = env.NATS_NKEY,
      nkey_seed = env.NATS_NKEY_OTHER_SEED_FILE }, "_AUTHENTICATION",
      { env.NATS_NKEY_SEED_FILE, env.NATS_NKEY_OTHER_SEED_FILE })
    assert.are.equal("cannot connect to " .. env.NATS_AUTH_URL .. ": Authorization Violation", msg)
    -- read.py, with that seed, is refused too: the server checked the signature
    local got, err, code = N.ping("auth", { nkey_seed = env.NATS_NKEY_OTHER_SEED_FILE })
    assert.is_nil(got)
    assert.are.equal(3, code, err)
  end))

  it("names a seed file that is missing, or holds no seed", N.with_logs(function()
    local missing = N.dir .. "/keys/no-such.seed"
    local msg = refused({ servers = env.NATS_AUTH_URL, nkey = env.NATS_NKEY, nkey_seed = missing }, "_NATS")
    assert.are.equal(("cannot connect to %s: error opening file '%s': No such file or directory")
      :format(env.NATS_AUTH_URL, missing), msg)
    msg = refused_keeping({ servers = env.NATS_AUTH_URL, nkey = env.NATS_NKEY, nkey_seed = env.NATS_CA }, "_NATS",
      { env.NATS_NKEY_SEED_FILE })
    assert.are.equal(("cannot connect to %s: no nkey user seed found in '%s'"):format(env.NATS_AUTH_URL, env.NATS_CA), msg)
  end))

  it("connects with a .creds file (operator, account, user JWTs)", N.with_logs(function()
    round_trip(assert(producers.nats.new({ servers = env.NATS_JWT_URL, creds = env.NATS_CREDS })), "jwt")
  end))

  it("reconnects with its .creds after the server restarts", N.with_logs(function()
    local log = H.recorder()
    local p = assert(producers.nats.new({ servers = env.NATS_JWT_URL, creds = env.NATS_CREDS,
      reconnect_wait = 0.1, logger = log.fn, log_level = "info" }))
    local stream = N.stream("SEC")
    N.create_stream(stream, { "sec." .. stream .. ".>" }, nil, { kind = "jwt" })
    assert.is_true(p:produce("sec." .. stream .. ".x", "k1", "before"))
    assert.is_true(p:flush(10))
    N.restart("jwt")
    assert.is_true(N.wait_until(function() p:poll(); return log.find("reconnected to", "info") ~= nil end, 20),
      log.text())
    assert.is_true(p:produce("sec." .. stream .. ".x", "k2", "after"))
    assert.is_true(p:flush(10))
    p:close()
    local recs = N.read(stream, { kind = "jwt" })
    assert.are.same({ "before", "after" }, { recs[1].value, recs[2].value })
  end))

  it("refuses the .creds of an account the server does not know, naming the cause and no JWT or seed", N.with_logs(function()
    local msg = refused_keeping({ servers = env.NATS_JWT_URL, creds = env.NATS_CREDS_OTHER }, "_AUTHENTICATION",
      { env.NATS_CREDS, env.NATS_CREDS_OTHER })
    assert.are.equal("cannot connect to " .. env.NATS_JWT_URL .. ": Authorization Violation", msg)
    local got, err, code = N.ping("jwt", { creds = env.NATS_CREDS_OTHER })
    assert.is_nil(got)
    assert.are.equal(3, code, err)
    -- nor does an nkey user or a password get in: the server trusts the operator only
    refused({ servers = env.NATS_JWT_URL, nkey = env.NATS_NKEY, nkey_seed = env.NATS_NKEY_SEED_FILE }, "_AUTHENTICATION")
    refused({ servers = env.NATS_JWT_URL, user = env.NATS_USER, password = env.NATS_PASSWORD }, "_AUTHENTICATION",
      env.NATS_PASSWORD)
  end))

  it("takes one way to authenticate at a time, an nkey with its seed", function()
    local function raises(opts, message)
      opts.servers = env.NATS_AUTH_URL
      message = "producers.nats.new: " .. message
      assert.has_error(function() producers.nats.new(opts) end, message)
      assert.are.same({ nil, message }, { producers.nats.check(opts) })
    end
    local nkey = { nkey = env.NATS_NKEY, nkey_seed = env.NATS_NKEY_SEED_FILE }
    raises({ nkey = env.NATS_NKEY }, "nkey and nkey_seed must be given together")
    raises({ nkey_seed = env.NATS_NKEY_SEED_FILE }, "nkey and nkey_seed must be given together")
    raises({ nkey = nkey.nkey, nkey_seed = nkey.nkey_seed, creds = env.NATS_CREDS }, "nkey and creds cannot be given together")
    raises({ user = "u", password = "p", nkey = nkey.nkey, nkey_seed = nkey.nkey_seed },
      "user/password and nkey cannot be given together")
    raises({ token = "t", creds = env.NATS_CREDS }, "token and creds cannot be given together")
    raises({ user = "u", password = "p", creds = env.NATS_CREDS }, "user/password and creds cannot be given together")
  end)

  it("names a .creds file that is missing", N.with_logs(function()
    local missing = N.dir .. "/keys/no-such.creds"
    local msg = refused({ servers = env.NATS_JWT_URL, creds = missing }, "_NATS")
    assert.are.equal(("cannot connect to %s: error opening file '%s': No such file or directory")
      :format(env.NATS_JWT_URL, missing), msg)
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
