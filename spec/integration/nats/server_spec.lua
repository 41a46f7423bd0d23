-- The NATS test infrastructure itself (issue #23's groundwork): the
-- servers scripts/nats/server.sh runs (JetStream on file storage, plain,
-- authenticated, TLS), the independent reader scripts/nats/read.py
-- (nats-py), and Debian's nats.c 3.4 (spec/support/nats_smoke.c, built
-- here with cc -lnats) publishing to JetStream. The NATS backend's specs
-- will stand on these. Tagged #nats: scripts/integration.sh nats runs it
-- (it starts and stops its own servers in lazy_setup/lazy_teardown, so
-- another tag's run that loads this file starts nothing).
local N = require("support.nats")
local H = require("helpers")

describe("NATS JetStream servers for the specs #nats", function()
  local env

  lazy_setup(function()
    env = N.start()
  end)

  lazy_teardown(function()
    N.stop()
  end)

  it("starts three servers on 127.0.0.1 only, at the offset ports, JetStream on", N.with_logs(function()
    local offset = tonumber(os.getenv("PRODUCERS_NATS_PORT_OFFSET") or "0")
    assert.are.equal("nats://127.0.0.1:" .. (14222 + offset), env.NATS_URL)
    assert.are.equal("nats://127.0.0.1:" .. (14223 + offset), env.NATS_AUTH_URL)
    assert.are.equal("tls://localhost:" .. (14224 + offset), env.NATS_TLS_URL)
    local st = N.status()
    for _, name in ipairs({ "plain", "auth", "tls" }) do
      assert.is_number(st[name], name .. " runs")
    end
    for _, url in ipairs({ env.NATS_URL, env.NATS_AUTH_URL, env.NATS_TLS_URL }) do
      assert.are.same({ "0100007F" }, N.listen_addresses(N.port(url)))   -- 127.0.0.1, nothing else
    end
    local info = assert(N.ping("plain"))
    assert.is_true(info.jetstream)
    assert.are.equal(env.NATS_VERSION, info.version)
    assert.are.equal("producers-plain", info.server_name)
    -- env.sh holds the credentials; start's own output does not
    local out = N.must_server("env")
    assert.truthy(out:find("NATS_PASSWORD=", 1, true))
    assert.is_nil(N.must_server("status"):find(env.NATS_PASSWORD, 1, true))
  end))

  it("runs the binary $PRODUCERS_NATS_SERVER names (Debian's by default); env, status and restart agree", N.with_logs(function()
    local wanted = os.getenv("PRODUCERS_NATS_SERVER") or "debian"
    local path, version = N.must_server("which", wanted):match("^(%S+) (%S+)\n$")
    assert.truthy(path, "server.sh which " .. wanted)
    if wanted == "debian" then assert.are.equal("/usr/sbin/nats-server", path) end
    assert.are.same({ path, version, version }, { env.NATS_SERVER_BIN, env.NATS_SERVER_VERSION, env.NATS_VERSION })
    assert.are.equal(version, assert(N.ping("plain")).version)
    assert.truthy(N.must_server("status"):find(("nats-server %s (%s)"):format(version, path), 1, true))
    local function exe(pid) return (H.sh("readlink /proc/" .. pid .. "/exe"):gsub("\n$", "")) end
    for name, pid in pairs(N.status()) do assert.are.equal(path, exe(pid), name) end
    -- restart and up run the binary start ran, whatever the environment says now
    local other = wanted == "debian" and "newest" or "debian"
    local out, ok = H.sh(("PRODUCERS_NATS_SERVER=%s %s restart plain 2>&1"):format(other, H.shell_quote(N.server_sh)))
    assert(ok, out)
    assert.are.equal(path, exe(N.status().plain))
  end))

  it("creates a stream, stores what read.py publishes and reads it back as JSON lines", N.with_logs(function()
    local stream = N.stream("ORDERS")
    local made = N.create_stream(stream, { "orders.>" }, { duplicate_window = 60 })
    assert.are.same({ stream = stream, subjects = { "orders.>" }, messages = 0 }, made)
    local acks = assert(N.publish("orders.eu", { "first {i}", "second {i}" },
      { count = 2, msg_id = "m-{i}", headers = { trace = "t-1" } }))
    -- one ack per message; the second data of each round repeats the round's id: a duplicate
    assert.are.same({
      { stream = stream, seq = 1, duplicate = false },
      { stream = stream, seq = 1, duplicate = true },
      { stream = stream, seq = 2, duplicate = false },
      { stream = stream, seq = 2, duplicate = true },
    }, acks)
    local binary = "a\255\254z\1"   -- no NUL: read.py takes it from its command line
    assert(N.publish("orders.us", binary))
    local recs = N.read(stream)
    assert.are.equal(3, #recs)
    assert.are.same({ stream = stream, seq = 1, subject = "orders.eu", data = "first 0", encoding = "utf-8",
                      value = "first 0", headers = { ["Nats-Msg-Id"] = "m-0", trace = "t-1" } }, recs[1])
    assert.are.equal("first 1", recs[2].value)
    assert.are.equal("base64", recs[3].encoding)
    assert.are.equal(binary, recs[3].value)
    assert.is_nil(recs[3].headers)
    assert.are.same({ recs[3] }, N.read(stream, { filter = "orders.us" }))
    local info = N.info(stream)
    assert.are.equal(3, info.messages)
    assert.are.equal(3, info.last_seq)
  end))

  it("refuses a publish no stream captures, and one past a full stream's limit", N.with_logs(function()
    local acks, err, code = N.publish("nobody.listens", "x")
    assert.is_nil(acks)
    assert.are.equal(1, code)
    assert.truthy(err:find("NoStreamResponseError", 1, true), err)

    local stream = N.stream("FULL")
    N.create_stream(stream, { "full.>" }, { max_msgs = 2, discard = "new" })
    assert.are.same({ { stream = stream, seq = 1, duplicate = false },
                      { stream = stream, seq = 2, duplicate = false } },
      assert(N.publish("full.a", "m", { count = 2 })))
    acks, err = N.publish("full.a", "one too many")
    assert.is_nil(acks)
    assert.truthy(err:find("maximum messages exceeded", 1, true), err)
    local info = N.info(stream)
    assert.are.same({ 2, 2, "new" }, { info.messages, info.max_msgs, info.discard })

    N.delete_stream(stream)
    local _, derr, _, dcode = N.tool({ "--stream", stream, "--info" })
    assert.are.equal(4, dcode)
    assert.truthy(derr:find("stream not found", 1, true), derr)
  end))

  it("keeps the stream's messages across a restart (file storage) and refuses while down", N.with_logs(function()
    local stream = N.stream("KEEP")
    N.create_stream(stream, { "keep.>" })
    assert(N.publish("keep.x", "before {i}", { count = 5 }))
    local before = N.read(stream)
    assert.are.equal(5, #before)
    local pids = N.status()

    N.down("plain")
    assert.is_false(N.status().plain)
    assert.is_false(N.port_open(N.port(env.NATS_URL)))
    local info, err, code = N.ping("plain")
    assert.is_nil(info)
    assert.are.equal(3, code, err)
    N.up("plain")
    assert.are.same(before, N.read(stream))

    N.restart()
    local after = N.status()
    for _, name in ipairs({ "plain", "auth", "tls" }) do
      assert.is_number(after[name])
      assert.are_not.equal(pids[name], after[name], name .. " is a new process")
    end
    assert.are.same(before, N.read(stream))
    assert.are.same({ { stream = stream, seq = 6, duplicate = false } }, assert(N.publish("keep.x", "after")))
  end))

  it("authenticates on the auth server and refuses without or with wrong credentials", N.with_logs(function()
    local info = assert(N.ping("auth"))
    assert.are.equal("producers-auth", info.server_name)
    assert.is_false(info.tls)
    local refused = { { no_auth = true }, { password = "wrong" }, { user = "mallory", password = env.NATS_PASSWORD } }
    for _, opts in ipairs(refused) do
      local got, err, code = N.ping("auth", opts)
      assert.is_nil(got)
      assert.are.equal(3, code)
      assert.truthy(err:find("Authorization Violation", 1, true), err)
      assert.is_nil(err:find(env.NATS_PASSWORD, 1, true))
    end
  end))

  it("serves TLS with the throwaway CA, and refuses an unknown CA, plaintext and bad credentials", N.with_logs(function()
    local info = assert(N.ping("tls"))
    assert.are.equal("producers-tls", info.server_name)
    assert.is_true(info.tls)
    local got, err, code = N.ping("tls", { ca = false })
    assert.is_nil(got)
    assert.are.equal(3, code)
    assert.truthy(err:find("CERTIFICATE_VERIFY_FAILED", 1, true), err)
    got, err, code = N.ping("tls", { password = "wrong" })
    assert.is_nil(got)
    assert.are.equal(3, code)
    assert.truthy(err:find("Authorization Violation", 1, true), err)
    -- a client that does not speak TLS: the server requires it
    local out = H.sh(("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d; head -n 1 <&3'"):format(N.port(env.NATS_TLS_URL)))
    assert.truthy(out:find('"tls_required":true', 1, true), out)
  end))

  describe("nats.c 3.4 (libnats-dev)", function()
    local smoke

    lazy_setup(function()
      smoke = os.tmpname()
      local out, ok = H.sh(("cc -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -o %s "
        .. "spec/support/nats_smoke.c $(pkg-config --cflags --libs libnats) -lpthread"):format(H.shell_quote(smoke)))
      assert(ok, "nats_smoke.c did not build: " .. out)
    end)

    lazy_teardown(function() os.remove(smoke) end)

    -- runs the smoke program against a server kind; returns its lines and exit status
    local function run(kind, subject, count, args)
      local conn, prefix = N.connection(kind)
      local url = conn[2]
      local extra = {}
      for _, a in ipairs(args or {}) do extra[#extra + 1] = H.shell_quote(a) end
      if kind == "tls" then extra[#extra + 1] = "--ca " .. H.shell_quote(env.NATS_CA) end
      local out, _, code = H.sh(("%s %s %s %s %d %s"):format(prefix, H.shell_quote(smoke), H.shell_quote(url),
        H.shell_quote(subject), count, table.concat(extra, " ")))
      local lines = {}
      for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
      table.sort(lines)   -- acks arrive in publish order; sorted, the check does not depend on it
      return lines, code
    end

    it("publishes asynchronously with Nats-Msg-Id and a header; the acks name stream and sequence; read.py agrees", N.with_logs(function()
      local stream = N.stream("SMOKE")
      N.create_stream(stream, { "smoke.>" }, { duplicate_window = 60 })
      local lines, code = run("plain", "smoke.a", 3, { "--msg-id", "id" })
      assert.are.equal(0, code, table.concat(lines, "\n"))
      assert.are.same({
        ("ack 0 stream=%s seq=1 duplicate=0"):format(stream),
        ("ack 1 stream=%s seq=2 duplicate=0"):format(stream),
        ("ack 2 stream=%s seq=3 duplicate=0"):format(stream),
        "done acked=3 failed=0",
      }, lines)
      local recs = N.read(stream)
      assert.are.equal(3, #recs)
      for i, r in ipairs(recs) do
        assert.are.equal("smoke-" .. (i - 1), r.value)
        assert.are.same({ ["Nats-Msg-Id"] = "id-" .. (i - 1), ["Producers-Key"] = "key-" .. (i - 1) }, r.headers)
      end
      -- the same ids again: acked as duplicates with the first sequence, not stored
      lines = run("plain", "smoke.a", 2, { "--msg-id", "id" })
      assert.are.same({
        ("ack 0 stream=%s seq=1 duplicate=1"):format(stream),
        ("ack 1 stream=%s seq=2 duplicate=1"):format(stream),
        "done acked=2 failed=0",
      }, lines)
      assert.are.equal(3, N.info(stream).messages)
    end))

    it("runs valgrind-clean: no leak and no invalid access in nats.c 3.4's publish, ack and teardown", N.with_logs(function()
      local stream = N.stream("VG")
      N.create_stream(stream, { "vg.>" })
      local _, prefix = N.connection("plain")
      local out, ok, code = H.sh(("%s valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect "
        .. "--error-exitcode=9 %s %s vg.a 3 --msg-id vg"):format(prefix, H.shell_quote(smoke), H.shell_quote(env.NATS_URL)))
      assert(ok, ("valgrind exit %s:\n%s"):format(tostring(code), out))
      assert.truthy(out:find("done acked=3 failed=0", 1, true), out)
      assert.are.equal(3, N.info(stream).messages)
    end))

    it("reports no stream as No responders, a full stream as 10077, and connects over TLS with credentials", N.with_logs(function()
      assert.are.same({ "done acked=0 failed=1", "err 0 status=No responders available for request code=0 "
        .. "text=No responders available for request" }, (run("plain", "nostream.a", 1)))
      local stream = N.stream("CFULL")
      N.create_stream(stream, { "cfull.>" }, { max_msgs = 1, discard = "new" })
      assert.are.same({ ("ack 0 stream=%s seq=1 duplicate=0"):format(stream), "done acked=1 failed=1",
        "err 1 status=Error code=10077 text=maximum messages exceeded" }, (run("plain", "cfull.a", 2)))

      local secure = N.stream("SECURE")
      N.create_stream(secure, { "secure.>" }, nil, { kind = "tls" })
      assert.are.same({ ("ack 0 stream=%s seq=1 duplicate=0"):format(secure), "done acked=1 failed=0" },
        (run("tls", "secure.a", 1)))
      assert.are.equal("smoke-0", N.read(secure, { kind = "tls" })[1].value)
      local lines, code = run("auth", "secure.a", 1, {})
      assert.are.equal(0, code)   -- the auth server has a store of its own: no stream there
      assert.truthy(lines[2]:find("No responders", 1, true))
    end))
  end)

  it("takes a token instead of user and password (start --token)", N.with_logs(function()
    env = N.start("--token", "tok-" .. os.time())
    assert.are.equal("token", env.NATS_AUTH_MODE)
    assert.is_nil(env.NATS_USER)
    assert.is_true(assert(N.ping("tls")).tls)
    assert(N.ping("auth"))
    local got, err, code = N.ping("auth", { token = "not-it" })
    assert.is_nil(got)
    assert.are.equal(3, code, err)
  end))

  it("stops every server by its pid; then nothing answers", N.with_logs(function()
    local pids = N.status()
    for _, name in ipairs({ "plain", "auth", "tls" }) do assert.is_true(N.alive(pids[name])) end
    N.stop()
    for _, name in ipairs({ "plain", "auth", "tls" }) do
      assert.is_false(N.status()[name])
      assert.is_true(N.alive(pids[name]) == false, name .. "'s process is gone")
    end
    for _, url in ipairs({ env.NATS_URL, env.NATS_AUTH_URL, env.NATS_TLS_URL }) do
      assert.is_false(N.port_open(N.port(url)))
    end
    local got, _, code = N.ping("plain")
    assert.is_nil(got)
    assert.are.equal(3, code)
  end))
end)
