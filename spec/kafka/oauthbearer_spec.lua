-- SASL/OAUTHBEARER with a Lua token callback (on_oauthbearer_token,
-- docs/oauthbearer.md), without a broker: librdkafka asks for the first
-- token at creation whatever the broker, so a producer on a closed port
-- (SASL_PLAINTEXT) gets the refresh event, served by poll. The real login
-- is spec/integration/80-oauthbearer_spec.lua.
local producers = require("producers")
local H = require("helpers")
local jwt = require("support.jwt")
local kafka = producers.kafka

local BUSY = "not allowed from a delivery callback, logger or encoder of the same producer"
local CLOSED_PORT = "127.0.0.1:1"

-- A producer on a closed port whose refreshes call token_fn; errors go to
-- a list (on_error) unless opts says otherwise; other lines are dropped
-- unless opts has a logger. Returns the producer and
-- the list of error objects.
local function producer(token_fn, opts)
  opts = opts or {}
  local errors = {}
  opts.bootstrap_servers = CLOSED_PORT
  opts.on_oauthbearer_token = token_fn
  if opts.on_error == nil and opts.logger == nil then
    opts.on_error = function(e) errors[#errors + 1] = e end
  end
  opts.logger = opts.logger or function() end
  opts.config = opts.config or {}
  opts.config["security.protocol"] = "SASL_PLAINTEXT"
  return kafka.new(opts), errors
end

-- Polls p until cond() holds (10 s at most).
local function poll_until(p, cond)
  return H.wait_until(cond, 10, function() p:poll(0.05) end)
end

-- A valid token for principal alice, expiring in an hour.
local function good_token()
  local token, exp = jwt.unsecured("alice", 3600)
  return token, exp, "alice"
end

-- Serves the first refresh of a producer whose callback returns what
-- returns() gives; returns the error objects reported (after a short
-- while more, so that a second report would show).
local function failure_of(returns)
  local calls = 0
  local p, errors = producer(function()
    calls = calls + 1
    return returns()
  end)
  assert.is_true(poll_until(p, function() return #errors > 0 end))
  p:poll(0.3)
  assert.equal(1, calls)
  p:close(0)
  return errors
end

local function failed_with(reason, returns)
  local errors = failure_of(returns)
  assert.equal(1, #errors)
  assert.equal("token refresh failed: " .. reason, errors[1].message)
  assert.equal("_AUTHENTICATION", errors[1].name)
  assert.is_false(errors[1].fatal)
end

describe("on_oauthbearer_token", function()
  describe("as an option", function()
    it("selects SASL_SSL with OAUTHBEARER; config may say SASL_PLAINTEXT", function()
      local conf = kafka.config({ bootstrap_servers = "b", on_oauthbearer_token = good_token })
      assert.equal("SASL_SSL", conf["security.protocol"])
      assert.equal("OAUTHBEARER", conf["sasl.mechanisms"])
      assert.is_nil(conf["sasl.username"])
      conf = kafka.config({ bootstrap_servers = "b", on_oauthbearer_token = good_token,
                            sasl_mechanism = "OAUTHBEARER",
                            config = { ["security.protocol"] = "SASL_PLAINTEXT" } })
      assert.equal("SASL_PLAINTEXT", conf["security.protocol"])
    end)

    it("must be a function", function()
      assert.has_error(function() kafka.new({ bootstrap_servers = "b", on_oauthbearer_token = 1 }) end,
        "producers.kafka.new: option 'on_oauthbearer_token' must be a function, got number")
      assert.same({ nil, "producers.kafka.new: option 'on_oauthbearer_token' must be a function, got number" },
        { kafka.check({ bootstrap_servers = "b", on_oauthbearer_token = 1 }) })
      local callable = setmetatable({}, { __call = good_token })
      local p = kafka.new({ bootstrap_servers = "b", on_oauthbearer_token = callable })
      p:close(0)
    end)

    it("is refused with username and password, naming both, and with another mechanism", function()
      assert.has_error(function()
        kafka.new({ bootstrap_servers = "b", username = "u", password = "p", on_oauthbearer_token = good_token })
      end, "producers.kafka.new: on_oauthbearer_token and username/password cannot be given together")
      assert.has_error(function()
        kafka.new({ bootstrap_servers = "b", sasl_mechanism = "PLAIN", on_oauthbearer_token = good_token })
      end, "producers.kafka.new: on_oauthbearer_token selects sasl_mechanism OAUTHBEARER, got 'PLAIN'")
    end)
  end)

  describe("the first token", function()
    it("is asked for by the first poll, on the caller's thread, with sasl.oauthbearer.config", function()
      local seen, inside = {}, false
      local p = producer(function(config)
        seen[#seen + 1] = { config = config, inside = inside }
        return good_token()
      end, { config = { ["sasl.oauthbearer.config"] = "scope=produce" } })
      assert.equal(0, #seen)          -- not at creation
      inside = true
      assert.is_true(poll_until(p, function() return #seen > 0 end))
      inside = false
      p:poll(0.3)
      p:close(0)
      assert.same({ { config = "scope=produce", inside = true } }, seen)
    end)

    it("gets nil as config without sasl.oauthbearer.config, and a token set is used", function()
      local log = H.recorder()
      local args
      local p = producer(function(...)
        args = table.pack and table.pack(...) or { n = select("#", ...), ... }
        return good_token()
      end, { logger = log.fn, log_level = "debug", config = { debug = "security" } })
      assert.is_true(poll_until(p, function()
        return log.find("Waking up waiting broker threads after setting OAUTHBEARER token")
      end), log.text())
      p:close(0)
      assert.equal(1, args.n)
      assert.is_nil(args[1])
      assert.is_nil(log.find("token refresh failed"), log.text())   -- (the closed port's errors come)
    end)

    it("is asked for by produce, flush and reports too", function()
      for _, serve in ipairs({
        function(p) assert.is_true(p:produce("t", "k", "v")) end,
        function(p) p:flush(0.2) end,
        function(p) assert.same({}, p:reports()) end,   -- nginx's timer serves this way
      }) do
        local calls = 0
        local p = producer(function() calls = calls + 1; return good_token() end,
                           { config = { ["message.timeout.ms"] = 200 } })
        assert.is_true(H.wait_until(function() return calls > 0 end, 10, function() serve(p) end))
        p:close(0)
        assert.equal(1, calls)
      end
    end)

    it("is set with extensions", function()
      local log = H.recorder()
      local p, errors = producer(function()
        local token, exp = good_token()
        return token, exp, "alice", { traceId = "abc", logicalCluster = "lkc-1" }
      end, { logger = log.fn, log_level = "debug", config = { debug = "security" } })
      assert.is_true(poll_until(p, function()
        return log.find("Waking up waiting broker threads after setting OAUTHBEARER token")
      end), log.text())
      p:close(0)
      assert.equal(0, #errors)
    end)
  end)

  describe("a failed refresh", function()
    it("when the callback raises: reported once through on_error, not raised by poll", function()
      local errors = failure_of(function() error("no token service") end)
      assert.equal(1, #errors)
      assert.matches("^token refresh failed: spec/kafka/oauthbearer_spec%.lua:%d+: no token service$",
        errors[1].message)
      assert.equal("_AUTHENTICATION", errors[1].name)
      assert.equal("producers.Error", getmetatable(errors[1]).__name)
    end)

    it("when it returns nil and a reason, or nothing", function()
      failed_with("token service down", function() return nil, "token service down" end)
      failed_with("on_oauthbearer_token returned no token", function() end)
    end)

    it("when the token is not a string, or empty", function()
      failed_with("on_oauthbearer_token must return a token string, got number",
        function() return 42, os.time() * 1000 + 60000, "alice" end)
      failed_with("on_oauthbearer_token must return a token string, got table",
        function() return {}, os.time() * 1000 + 60000, "alice" end)
      failed_with("the token must not be empty or contain a NUL byte",
        function() return "", os.time() * 1000 + 60000, "alice" end)
      failed_with("the token must not be empty or contain a NUL byte",
        function() return "ab\0cd", os.time() * 1000 + 60000, "alice" end)
    end)

    it("when lifetime_ms is not a positive integer", function()
      local token = good_token()
      local MSG = "lifetime_ms must be a positive integer (ms since the epoch), got "
      failed_with(MSG .. "string", function() return token, "soon", "alice" end)
      failed_with(MSG .. "nil", function() return token, nil, "alice" end)
      failed_with(MSG .. "a fraction", function() return token, os.time() * 1000 + 0.5, "alice" end)
      failed_with(MSG .. "0", function() return token, 0, "alice" end)
      failed_with(MSG .. "-5", function() return token, -5, "alice" end)
    end)

    it("when lifetime_ms is in the past: librdkafka refuses it", function()
      local token = good_token()
      local errors = failure_of(function() return token, 1000, "alice" end)
      assert.equal(1, #errors)
      assert.matches("^token refresh failed: Must supply an unexpired token: now=%d+ms, exp=1000ms$",
        errors[1].message)
    end)

    it("when the principal is missing", function()
      local token, exp = good_token()
      failed_with("principal must be a string, got nil", function() return token, exp end)
      failed_with("principal must be a string, got number", function() return token, exp, 7 end)
    end)

    it("when extensions are not a table of strings", function()
      local token, exp = good_token()
      failed_with("extensions must be a table, got string", function() return token, exp, "alice", "x=y" end)
      failed_with("extensions: 'traceId' must be a string, got number",
        function() return token, exp, "alice", { traceId = 12 } end)
      failed_with("extensions: keys must be strings, got number",
        function() return token, exp, "alice", { "a" } end)
    end)

    it("when librdkafka refuses an extension", function()
      local token, exp = good_token()
      local errors = failure_of(function() return token, exp, "alice", { auth = "x" } end)
      assert.equal(1, #errors)
      assert.matches("^token refresh failed: .*auth", errors[1].message)
    end)

    it("is logged at error level without on_error", function()
      local log = H.recorder()
      local p = producer(function() return nil, "token service down" end, { logger = log.fn })
      assert.is_true(poll_until(p, function() return #log.lines > 0 end))
      p:poll(0.3)
      p:close(0)
      assert.same({ { "error", "error: token refresh failed: token service down (_AUTHENTICATION)" } }, log.lines)
    end)

    it("makes messages time out with cause _AUTHENTICATION", function()
      local reports = {}
      local p = producer(function() return nil, "token service down" end, {
        config = { ["message.timeout.ms"] = 500 },
        on_delivery = function(err, r) r.err = err; reports[#reports + 1] = r end,
      })
      assert.is_true(p:produce("t", "k", "v"))
      assert.is_true(p:flush(10))
      p:close(0)
      assert.equal(1, #reports)
      assert.equal("_MSG_TIMED_OUT", reports[1].error)
      assert.equal("_AUTHENTICATION", reports[1].cause)
      assert.equal("Local: Message timed out (last error: token refresh failed: token service down)",
        reports[1].err)
    end)

    it("raises from the serving call what on_error raises, as for any client error", function()
      local p = producer(function() return nil, "down" end, { on_error = function(e) error("on_error saw " .. e.message) end })
      local ok, err = pcall(function()
        for _ = 1, 100 do p:poll(0.05) end
      end)
      p:close(0)
      assert.is_false(ok)
      assert.matches("on_error saw token refresh failed: down", err, 1, true)
    end)

    it("is asked again about 10 s later (librdkafka's retry), then a token set is used", function()
      local calls, t = {}, os.time()
      local p, errors = producer(function()
        calls[#calls + 1] = os.time() - t
        if #calls == 1 then return nil, "not yet" end
        return good_token()
      end)
      assert.is_true(H.wait_until(function() return #calls == 2 end, 20, function() p:poll(0.1) end))
      p:poll(0.3)
      p:close(0)
      assert.is_true(calls[2] >= 8, "second call after " .. calls[2] .. " s")
      local refresh_errors = {}
      for _, e in ipairs(errors) do
        if e.message:find("token", 1, true) then refresh_errors[#refresh_errors + 1] = e.message end
      end
      assert.same({ "token refresh failed: not yet" }, refresh_errors)
    end)

    it("is reported for OAUTHBEARER set through config without the option", function()
      local errors = {}
      local p = kafka.new({ bootstrap_servers = CLOSED_PORT, on_error = function(e) errors[#errors + 1] = e end,
        config = { ["security.protocol"] = "SASL_PLAINTEXT", ["sasl.mechanisms"] = "OAUTHBEARER" } })
      assert.is_true(poll_until(p, function() return #errors > 0 end))
      p:close(0)
      assert.equal("token refresh failed: no on_oauthbearer_token option", errors[1].message)
    end)
  end)

  describe("secrets", function()
    it("never puts the token or its payload in a log line, an error, a report or tostring", function()
      local token, exp, payload = jwt.unsecured("alice", 3600)
      local log, reports, errors = H.recorder(), {}, {}
      local p = producer(function() return token, exp, "alice" end, {
        logger = log.fn, log_level = "debug",
        on_error = function(e) errors[#errors + 1] = e.message end,
        on_delivery = function(err, r) reports[#reports + 1] = tostring(err) .. " " .. tostring(r.cause) end,
        config = { debug = "security,broker", ["message.timeout.ms"] = 1000 },
      })
      assert.is_true(p:produce("t", "k", "v"))
      assert.is_true(p:flush(10))
      assert.truthy(log.find("OAUTHBEARER token"), log.text())
      assert.is_true(#log.lines > 10)
      local everything = table.concat({ log.text(), table.concat(errors, "\n"),
                                        table.concat(reports, "\n"), tostring(p) }, "\n")
      p:close(0)
      assert.falsy(everything:find(token, 1, true))
      assert.falsy(everything:find(payload, 1, true))
      assert.falsy(everything:find(payload:sub(1, 8), 1, true))
    end)

    it("hides a token librdkafka refuses and quotes", function()
      local token = "bad token\1" .. jwt.base64url("a secret that must not leak")
      local errors = failure_of(function() return token, os.time() * 1000 + 60000, "alice" end)
      assert.equal(1, #errors)
      assert.matches("^token refresh failed: .*%*%*%*", errors[1].message)
      assert.falsy(errors[1].message:find(token:sub(-20), 1, true), errors[1].message)
    end)
  end)

  describe("re-entry from the callback", function()
    it("refuses close and flush with the busy message", function()
      local results = {}
      local p
      p = producer(function()
        results.close = { pcall(p.close, p, 0) }
        results.flush = { pcall(p.flush, p, 0) }
        return good_token()
      end)
      assert.is_true(poll_until(p, function() return results.close ~= nil end))
      assert.is_false(p:is_closed())
      p:close(0)
      assert.is_false(results.close[1])
      assert.matches("close: " .. BUSY, results.close[2], 1, true)
      assert.is_false(results.flush[1])
      assert.matches("flush: " .. BUSY, results.flush[2], 1, true)
    end)

    it("lets poll serve nothing (no nesting) and produce queue a message", function()
      local depth, max_depth, polled, produced = 0, 0, nil, nil
      local p
      p = producer(function()
        depth = depth + 1
        max_depth = math.max(max_depth, depth)
        polled = p:poll(0)
        produced = p:produce("t", "k", "from the callback")
        depth = depth - 1
        return good_token()
      end, { config = { ["message.timeout.ms"] = 300 } })
      assert.is_true(poll_until(p, function() return produced ~= nil end))
      assert.equal(1, max_depth)
      assert.equal(0, polled)
      assert.is_true(produced)
      assert.is_true(p:queue_length() <= 1)
      assert.is_true(p:flush(10))
      p:close(0)
    end)

    it("cannot yield: a callback that yields fails the refresh", function()
      local p, errors = producer(function() coroutine.yield("nope") end)
      local co = coroutine.wrap(function()
        assert.is_true(poll_until(p, function() return #errors > 0 end))
        return "done"
      end)
      assert.equal("done", co())
      p:close(0)
      assert.equal(1, #errors)
      -- Lua 5.4: "a C-call boundary"; LuaJIT: "C-call boundary", with the position
      local msg = errors[1].message
      assert.truthy(msg:match("^token refresh failed: .*attempt to yield across a C%-call boundary$")
        or msg:match("^token refresh failed: .*attempt to yield across C%-call boundary$"), msg)
    end)
  end)

  describe("lifecycle", function()
    it("close before any poll does not call the callback; close with messages waiting does", function()
      local calls = 0
      local p = producer(function() calls = calls + 1; return good_token() end)
      p:close(1)
      assert.equal(0, calls)
      local reports = {}
      p = producer(function() calls = calls + 1; return good_token() end,
                   { serve_on_produce = false, on_delivery = function(err, r) reports[#reports + 1] = r.error end })
      assert.is_true(p:produce("t", "k", "v"))
      p:close(0.5)
      assert.equal(1, calls)
      assert.same({ "_PURGE_QUEUE" }, reports)
    end)

    it("a producer collected while a refresh waits runs no Lua", function()
      local calls = 0
      local p = producer(function() calls = calls + 1; return good_token() end, { gc_flush_timeout = 0 })
      p = nil
      collectgarbage()
      collectgarbage()
      assert.equal(0, calls)
    end)

    it("leaks no registry ref", function()
      local function refs() return H.registry_refs(function(v) return type(v) ~= "number" end) end
      local function round()
        for _, fn in ipairs({ good_token, function() error("x") end, function() return nil, "y" end }) do
          local p = producer(fn)
          p:poll(0.2)
          p:close(0)
          p = producer(fn, { gc_flush_timeout = 0 })
          p:poll(0.2)
        end
        collectgarbage()
        collectgarbage()
      end
      round()
      local before = refs()
      round()
      assert.equal(before, refs())
    end)
  end)
end)
