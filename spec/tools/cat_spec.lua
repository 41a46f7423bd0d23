-- producers-cat (bin/producers-cat, issue #20) against the mock cluster:
-- usage errors named clearly, a bad -X property named, every line
-- delivered and read back with kcat, -k keys from a JSON field, failures
-- counted with their reason and a non-zero exit status, progress,
-- SIGTERM and SIGINT mid-stream (nothing accepted lost, 143 and 130),
-- and the copy `cmake --install` puts in <prefix>/bin.
-- The real broker: spec/integration/90-cat_spec.lua.
local producers = require("producers")
local H = require("helpers")
local child = require("support.child")
local C = require("support.cat")

local q = H.shell_quote
local LUA = os.getenv("PRODUCERS_LUA") or "lua5.4"
local _, BUILD = H.dirs("build")

local function lines(from, to, fmt)
  local t = {}
  for i = from, to do t[#t + 1] = (fmt or "%d"):format(i) end
  return table.concat(t, "\n") .. "\n"
end

local cat, summary, unsent = C.run, C.summary, C.unsent

describe("producers-cat #cat", function()
  local m, bootstraps
  setup(function()
    m = producers.mock_cluster(1)
    bootstraps = m:bootstraps()
  end)
  teardown(function() m:close() end)

  describe("usage", function()
    it("-h prints the usage and exits 0", function()
      local out, status = cat("-h")
      assert.equal(0, status, out)
      assert.matches("^usage: producers%-cat %-b BROKERS %-t TOPIC", out)
      for _, opt in ipairs({ "-k FIELD", "-X prop=value", "-u USER -p PASS", "--progress", "-T SECONDS" }) do
        assert.matches(opt, out, 1, true)
      end
    end)

    local CASES = {
      { "-b x", "producers-cat: -t TOPIC is required" },
      { "-t t", "producers-cat: -b BROKERS is required" },
      { "-b x -t t -z", "producers-cat: unknown option '-z'" },
      { "-b x -t t --topic=t", "producers-cat: unknown option '--topic=t'" },
      { "-b x -t", "producers-cat: -t needs an argument" },
      { "-b x -t t -X linger.ms", "producers-cat: -X takes prop=value, got 'linger.ms'" },
      { "-b x -t t -u alice", "producers-cat: -u and -p go together" },
      { "-b x -t t extra", "producers-cat: unexpected argument 'extra': lines are read from standard input" },
      { "-b x -t t -T soon", "producers-cat: -T takes seconds (a number >= 0), got 'soon'" },
      { "-b x -t t -k ''", "producers-cat: -k: the field name is empty" },
    }
    for _, c in ipairs(CASES) do
      it(("names what is wrong: %s"):format(c[1]), function()
        local out, status = cat(c[1], "never read\n")
        assert.equal(2, status, out)
        assert.equal(c[2] .. "\nTry 'producers-cat -h' for help.\n", out)
      end)
    end

    it("a bad -X property or value is named, before anything is read", function()
      local out, status = cat("-b x -t t -X linger.msec=5", "a\n")
      assert.equal(2, status, out)
      assert.matches("^producers%-cat: [^\n]*linger%.msec", out)
      assert.is_nil(out:find("lines read", 1, true), out)
      out, status = cat("-b x -t t -X linger.ms=soon", "a\n")
      assert.equal(2, status, out)
      assert.matches("^producers%-cat: [^\n]*linger%.ms", out)
    end)
  end)

  describe("producing", function()
    -- LuaJIT's io.read("*l") ends a line at a NUL byte (docs/producers-cat.md)
    local FORMAT = LUA == "luajit" and "line %d \255 " or "line %d \0 \255 "

    it("produces every line, as it is, in order; exit 0 and a summary", function()
      local topic = H.topic("cat")
      m:create_topic(topic, 1, 1)
      local input = lines(1, 2000, FORMAT) .. "\n" .. "last, without a newline"
      local out, status = cat(("-b %s -t %s"):format(q(bootstraps), q(topic)), input)
      assert.equal(0, status, out)
      assert.same({ 2002, 2002, 0 }, { summary(out) })
      assert.matches(" to " .. topic .. " in ", out, 1, true)
      local got = H.kcat_read(bootstraps, topic)
      assert.equal(2002, #got)
      for i = 1, 2000 do assert.equal(FORMAT:format(i), got[i].value) end
      assert.equal("", got[2001].value)                   -- an empty line: an empty message
      assert.equal("last, without a newline", got[2002].value)
      assert.is_nil(got[1].key)
    end)

    it("-k FIELD keys each message with the field of its JSON line; a line that is not JSON fails, said why", function()
      local topic = H.topic("cat-key")
      m:create_topic(topic, 1, 1)
      local input = table.concat({
        '{"user":"alice","n":1}',
        '{"n":2,"user":42}',
        'not json',
        '{"n":4}',
        '{"user":1.5}',
        '{"user":{"id":1}}',
        '["user"]',
        '{"user":"bob","n":8}',
      }, "\n") .. "\n"
      local out, status = cat(("-b %s -t %s -k user"):format(q(bootstraps), q(topic)), input)
      assert.equal(1, status, out)
      assert.same({ 8, 3, 5 }, { summary(out) })
      assert.matches("producers-cat: line 3: not JSON: json: ", out, 1, true)
      assert.matches("producers-cat: line 4: no field 'user' (or null)", out, 1, true)
      assert.matches("producers-cat: line 5: field 'user' is a float, not a string or an integer", out, 1, true)
      assert.matches("producers-cat: line 6: field 'user' is an object or array", out, 1, true)
      assert.matches("producers-cat:   2 x no field 'user' (or null)", out, 1, true)   -- lines 4 and 7
      local got = H.kcat_read(bootstraps, topic)
      assert.same({ "alice", "42", "bob" }, { got[1].key, got[2].key, got[3].key })
      assert.same({ '{"user":"alice","n":1}', '{"n":2,"user":42}', '{"user":"bob","n":8}' },
        { got[1].value, got[2].value, got[3].value })
    end)

    it("-X reaches librdkafka; a failure makes the exit status 1 and names its reason", function()
      local topic = H.topic("cat-x")
      m:create_topic(topic, 1, 1)
      local input = "short\n" .. ("x"):rep(3000) .. "\nshort too\n"
      local out, status = cat(("-b %s -t %s -X message.max.bytes=2000"):format(q(bootstraps), q(topic)), input)
      assert.equal(1, status, out)
      assert.same({ 3, 2, 1 }, { summary(out) })
      assert.matches("producers-cat: line 2: refused: MSG_SIZE_TOO_LARGE", out, 1, true)
      assert.equal(2, #H.kcat_read(bootstraps, topic))
    end)

    it("undeliverable messages are reported failed with their reason; exit 1", function()
      local out, status = cat("-b 127.0.0.1:1 -t t -X message.timeout.ms=300", lines(1, 50))
      assert.equal(1, status, out)
      assert.same({ 50, 0, 50 }, { summary(out) })
      assert.matches("producers-cat:   50 x not delivered: _MSG_TIMED_OUT", out, 1, true)
    end)

    it("--progress prints progress lines on stderr that is not a terminal", function()
      local topic = H.topic("cat-progress")
      local out, status = cat(("-b %s -t %s --progress -X linger.ms=1500"):format(q(bootstraps), q(topic)),
        lines(1, 3000))
      assert.equal(0, status, out)
      assert.matches("producers%-cat: [%d,]+ msg/s  read [%d,]+  delivered [%d,]+  failed 0  queued [%d,]+\n", out)
      assert.matches("read 3,000  delivered 3,000  failed 0  queued 0\n", out, 1, true)
      out = cat(("-b %s -t %s"):format(q(bootstraps), q(topic)), lines(1, 10))
      assert.is_nil(out:find("msg/s  read", 1, true), out)      -- not a terminal: none
    end)
  end)

  describe("signals", function()
    local c
    after_each(function() if c then c:cleanup() end end)

    for _, sig in ipairs({ { "TERM", 143 }, { "INT", 130 } }) do
      it(("SIG%s mid-stream: stops reading, delivers every line it sent, summary, exit %d")
          :format(sig[1], sig[2]), function()
        local topic = H.topic("cat-sig")
        m:create_topic(topic, 1, 1)
        c = child.start{ script = "bin/producers-cat", args = { "-b", bootstraps, "-t", topic },
                         stdin = "seq 1 3000000" }
        assert.truthy(c:wait_for(function() return c:bytes_read() > 300000 or c:exited() end, 30),
          "it read nothing: " .. c:output())
        local sent = c:kill(sig[1])
        local status = c:wait(30)
        assert.equal(sig[2], status, c:output())
        assert.is_true(child.now() - sent < 5, c:output())
        local out = c:stderr()
        local read, delivered, failed = summary(out)
        assert.matches(", stopped by SIG" .. sig[1] .. "\n", out, 1, true)
        assert.same({ read - unsent(out), 0 }, { delivered, failed })   -- a line waiting for room is not sent
        assert.is_true(read > 1000 and read < 3000000, out)
        local got = H.kcat_read(bootstraps, topic, 120)
        assert.equal(delivered, #got)
        for i, r in ipairs(got) do
          if r.value ~= tostring(i) then error(("message %d is %q"):format(i, tostring(r.value))) end
        end
      end)
    end

    it("a second signal stops the bounded wait at once; what is left is reported failed", function()
      c = child.start{ script = "bin/producers-cat", args = { "-b", "127.0.0.1:1", "-t", "t", "-T", "60" } }
      c:write("a\nb\nc\n")
      c:wait_blocked("pipe")
      c:kill("TERM")
      c:wait_blocked("futex")         -- waiting for the reports, up to -T 60
      local sent = c:kill("TERM")
      local status = c:wait(10)
      assert.equal(143, status, c:output())
      assert.is_true(child.now() - sent < 3, c:output())
      assert.same({ 3, 0, 3 }, { summary(c:stderr()) })
      assert.matches("3 x not delivered: _PURGE_", c:stderr(), 1, true)
    end)
  end)

  -- luarocks builds with CMake: its install puts producers-cat in the
  -- rock's bin/, which luarocks wraps into the tree's (as spec/packaging/luarocks_spec.lua: a
  -- clone of HEAD, once, in the Lua 5.4 suite)
  local it_54 = LUA == "lua5.4" and it or pending
  it_54("luarocks make installs it in the tree's bin/, for that Lua #luarocks", function()
    local root = H.dirs("build")
    local work = os.tmpname()
    os.remove(work)
    local out, ok = H.sh(("git clone -q %s %s/src && cd %s/src && luarocks --lua-version 5.4 --tree %s/tree "
      .. "make rockspec/producers-0.1.0-1.rockspec >/dev/null && cd / && %s/tree/bin/producers-cat "
      .. "-X test.mock.num.brokers=1 -t t < %s/src/README.md")
      :format(q(root), q(work), q(work), q(work), q(work), q(work)))
    os.execute("rm -rf " .. q(work))
    assert.is_true(ok, out)
    assert.matches("producers%-cat: [%d,]+ lines read, [%d,]+ delivered, 0 failed", out)
  end)

  -- the LuaJIT suite runs the LuaJIT build: its copy names luajit
  it("cmake --install puts it in <prefix>/bin, naming the interpreter, finding its modules from anywhere", function()
    local prefix = os.tmpname()
    os.remove(prefix)
    local out, ok = H.sh(("cmake --install %s --prefix %s >/dev/null"):format(q(BUILD), q(prefix)))
    assert.is_true(ok, out)
    local first = (H.read(prefix .. "/bin/producers-cat") or ""):match("^[^\n]*")
    out, ok = H.sh(("cd / && env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 %s/bin/producers-cat "
      .. "-X test.mock.num.brokers=1 -t t < /dev/null"):format(q(prefix)))
    os.execute("rm -rf " .. q(prefix))
    assert.equal("#!/usr/bin/env " .. LUA, first)
    assert.is_true(ok, out)
    assert.matches("producers-cat: 0 lines read, 0 delivered, 0 failed", out, 1, true)
  end)
end)
