-- producers.ngx with backend = "nats" (issue #23) in a real nginx (the
-- lua module on OpenResty's LuaJIT, two workers) against a real
-- nats-server -js (servers of its own: N.own(6)): requests in, messages
-- out, send waiting for the JetStream ack (stream, sequence, duplicate),
-- a named failure for a subject no stream captures, the counters of both
-- workers, an outage of the server, a graceful quit, the spool across a
-- quit during an outage; every accepted message read back once with
-- nats-py (a client we did not write).
-- LuaJIT only (nginx loads the LuaJIT build); pending elsewhere.
local producers = require("producers")
local cjson = require("cjson")
local H = require("helpers")
local N = require("support.nats")
local NG = require("support.nginx")
local S = require("support.spool")

local lua = os.getenv("PRODUCERS_LUA") or "lua5.4"
local describe_nginx = (lua == "luajit" and producers.nats.available) and describe or pending

local sh, q = H.sh, H.shell_quote
local root, build = H.dirs("build-luajit")

local function pause() sh("sleep 0.05") end

-- The nginx config: two workers, producers.ngx.init{ backend = "nats" }
-- with opts (a Lua table constructor's text), and /produce, /send,
-- /metrics.
local function conf(port, opts)
  return ([[
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 2;
pid logs/nginx.pid;
error_log logs/error.log info;
worker_shutdown_timeout 10s;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path client_body_temp;
  proxy_temp_path proxy_temp;
  fastcgi_temp_path fastcgi_temp;
  uwsgi_temp_path uwsgi_temp;
  scgi_temp_path scgi_temp;
  lua_package_path "ROOT/lua/?.lua;ROOT/lua/?/init.lua;;";
  lua_package_cpath "BUILD/?.so;;";
  lua_shared_dict producers 1m;
  init_by_lua_block {
    OPTS = OPTIONS
    assert(require("producers.ngx").check(OPTS))
  }
  init_worker_by_lua_block { require("producers.ngx").init(OPTS) }
  exit_worker_by_lua_block { require("producers.ngx").exit() }
  server {
    listen 127.0.0.1:PORT;
    location = /produce {
      content_by_lua_block {
        local a = ngx.req.get_uri_args()
        local ok, err, name = require("producers.ngx").produce(a.subject, a.key, { seq = tonumber(a.seq) })
        ngx.status = ok and 202 or 503
        ngx.say(require("cjson").encode({ queued = ok or false, err = err, name = name }))
      }
    }
    location = /send {
      content_by_lua_block {
        local a = ngx.req.get_uri_args()
        local r, err, name = require("producers.ngx").send(a.subject, a.key, { seq = tonumber(a.seq) }, { id = a.id })
        if not r then
          ngx.status = 502
          return ngx.say(require("cjson").encode({ err = err, name = name }))
        end
        ngx.say(require("cjson").encode({ topic = r.topic, key = r.key, stream = r.stream,
          sequence = r.sequence, offset = r.offset, duplicate = r.duplicate }))
      }
    }
    location = /metrics {
      content_by_lua_block { ngx.say(require("cjson").encode(require("producers.ngx").metrics())) }
    }
  }
}
]]):gsub("ROOT", root):gsub("BUILD", build):gsub("PORT", tostring(port)):gsub("OPTIONS", (opts:gsub("%%", "%%%%")))
end

local function get(n, path)
  return sh(("curl -s -w '\\n%%{http_code}' '%s%s'"):format(n.url, path))
end

-- GET path: the decoded JSON body and the status
local function call(n, path)
  local out = get(n, path)
  local body, code = out:match("^(.*)\n(%d+)$")
  return cjson.decode(body), code
end

describe_nginx("producers.ngx with backend = \"nats\" in nginx #nats_unit", function()
  local env, n

  lazy_setup(function()
    N.own(6)
    env = N.start()
  end)

  lazy_teardown(function()
    NG.stop(n)
    N.stop()
  end)

  after_each(function()
    NG.stop(n)
    n = nil
  end)

  local function start(opts)
    opts = opts or ('{ backend = "nats", servers = %q, shared_dict = "producers", close_timeout = 3, '
      .. 'reconnect_wait = 0.1 }'):format(env.NATS_URL)
    return NG.start(env.NATS_URL, function(ng) NG.write(ng.conf, conf(ng.port, opts)) end, function(ng)
      return (sh(("curl -s -o /dev/null -w '%%{http_code}' --max-time 2 %s/metrics"):format(ng.url))) == "200"
    end)
  end

  -- the counters once every worker has served every report
  local function settled(want_delivered)
    local metrics
    assert(H.wait_until(function()
      metrics = call(n, "/metrics")
      return metrics.delivered == want_delivered and metrics.queued == 0
    end, 15, pause), cjson.encode(metrics or {}))
    return metrics
  end

  it("delivers every request's message once, send waits for the ack, both workers count, quit closes", N.with_logs(function()
    local stream = N.stream("NGX")
    N.create_stream(stream, { "ngx.>" }, { duplicate_window = 60 })
    n = start()

    -- 40 requests, 4 at a time, to both workers
    local cfg = n.prefix .. "/produce.cfg"
    local lines = {}
    for seq = 1, 40 do
      lines[#lines + 1] = ('url = "%s/produce?subject=ngx.eu&key=k%d&seq=%d"'):format(n.url, seq, seq)
      lines[#lines + 1] = 'output = "/dev/null"'
    end
    NG.write(cfg, table.concat(lines, "\n") .. "\n")
    local out, ok = sh(("curl -s -Z --parallel-max 4 -w '%%{http_code}\\n' -K %s 2>/dev/null"):format(q(cfg)))
    assert.is_true(ok, out)
    assert.equal(40, NG.count(out, "202\n"), out)

    -- send: the JetStream ack as the report; the same id again, a duplicate
    local r, code = call(n, "/send?subject=ngx.w&key=w&seq=0&id=w-1")
    assert.equal("200", code, cjson.encode(r))
    assert.equal(stream, r.stream)
    assert.equal(r.sequence, r.offset)
    assert.same({ "ngx.w", "w", false }, { r.topic, r.key, r.duplicate })
    local again = call(n, "/send?subject=ngx.w&key=w&seq=0&id=w-1")
    assert.same({ stream, r.sequence, true }, { again.stream, again.sequence, again.duplicate })
    -- a subject no stream captures: the named failure
    local failed
    failed, code = call(n, "/send?subject=nobody.here&key=x&seq=0")
    assert.equal("502", code)
    assert.equal("NO_STREAM", failed.name)
    -- produce there: queued, then the default report's one error line
    local queued
    queued, code = call(n, "/produce?subject=nobody.here&key=y&seq=0")
    assert.same({ "202", true }, { code, queued.queued })

    assert.same({ delivered = 42, failed = 2, purged = 0, queued = 0, unreported = 0 }, settled(42))

    -- read back with nats-py: each accepted message once (the duplicate not stored)
    local recs = N.read(stream)
    assert.equal(41, #recs)
    local seen = {}
    for _, rec in ipairs(recs) do
      local seq = cjson.decode(rec.value).seq
      assert.is_nil(seen[seq], "twice: " .. seq)
      seen[seq] = true
      assert.equal(seq == 0 and "w" or "k" .. seq, rec.headers["Producers-Key"])
      assert.equal(seq == 0 and "ngx.w" or "ngx.eu", rec.subject)
    end
    for seq = 0, 40 do assert.is_true(seen[seq], "missing " .. seq) end

    NG.quit(n, 30)
    local log = n.log()
    assert.equal(2, NG.count(log, "producers: producer 'default' ready in worker"), log)
    assert.equal(2, NG.count(log, "(nats " .. env.NATS_URL .. ")"), log)
    assert.equal(2, NG.count(log, "producers: producer 'default' closed in worker"), log)
    assert.equal(2, NG.count(log, " purged (not delivered)"), log)
    assert.equal(1, NG.count(log, '[error]'), log)
    assert.equal(1, NG.count(log, 'producers: delivery failed: 1 message(s) to nobody.here (first: key "y"): '), log)
    assert.equal(1, NG.count(log, "(NO_STREAM)"), log)
    for _, level in ipairs({ "[crit]", "[alert]", "[emerg]" }) do assert.equal(0, NG.count(log, level), log) end
    assert.is_nil(log:find("exited on signal", 1, true), log)
  end))

  it("delivers what the workers accepted while the server was down once it is back", N.with_logs(function()
    local stream = N.stream("NGXOUT")
    N.create_stream(stream, { "out.>" })
    n = start()
    assert.equal("200", select(2, call(n, "/send?subject=out.a&key=first&seq=0")))
    N.down("plain")
    for seq = 1, 10 do
      local r, code = call(n, ("/produce?subject=out.a&key=k%d&seq=%d"):format(seq, seq))
      assert.equal("202", code, cjson.encode(r))
    end
    N.up("plain")
    assert.same({ delivered = 11, failed = 0, purged = 0, queued = 0, unreported = 0 }, settled(11))
    local got = {}
    for _, rec in ipairs(N.read(stream)) do got[#got + 1] = cjson.decode(rec.value).seq end
    table.sort(got)
    assert.same({ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, got)
    NG.quit(n, 30)
  end))

  it("keeps what the workers accepted during an outage in their spools across a quit; the next nginx delivers it once", N.with_logs(function()
    local stream = N.stream("NGXSP")
    N.create_stream(stream, { "sp.>" })
    local dir = S.tmpdir()
    finally(function() S.rm(dir) end)
    local opts = ('{ backend = "nats", servers = %q, shared_dict = "producers", close_timeout = 1, '
      .. 'reconnect_wait = 0.1, spool = { dir = %q }, spool_adopt_interval = 0.2 }'):format(env.NATS_URL, dir)
    n = start(opts)
    N.down("plain")
    for seq = 1, 20 do
      local r, code = call(n, ("/produce?subject=sp.a&key=k%d&seq=%d"):format(seq, seq))
      assert.equal("202", code, cjson.encode(r))
    end
    NG.quit(n, 30)                                     -- closed during the outage: on disk
    local log1 = n.log()
    NG.stop(n)                                         -- the prefix goes; the spool dir stays
    local left = 0                                     -- each worker's close line: what it left
    for k in log1:gmatch("0 purged %(not delivered%); (%d+) left in the spool for the next worker") do
      left = left + tonumber(k)
    end
    assert.equal(20, left, log1)
    N.up("plain")
    n = start(opts)                                    -- its workers adopt the old folders
    local got
    assert(H.wait_until(function()
      got = {}
      for _, rec in ipairs(N.read(stream)) do got[#got + 1] = cjson.decode(rec.value).seq end
      return #got >= 20
    end, 20, pause), "read back: " .. cjson.encode(got or {}) .. "\n" .. n.log():sub(-3000))
    table.sort(got)
    local want = {}
    for seq = 1, 20 do want[seq] = seq end
    assert.same(want, got)                             -- each once
    NG.quit(n, 30)
    assert.truthy(n.log():find("adopted the spool " .. dir .. "/", 1, true), n.log():sub(-3000))
  end))

  it("refuses to start on a bad NATS option, in init_by_lua, in producers.nats's words", N.with_logs(function()
    local ok, err = pcall(start, '{ backend = "nats", bootstrap_servers = "127.0.0.1:9092" }')
    assert.is_false(ok)
    assert.matches("init_by_lua error", err, 1, true)
    assert.matches("unknown option 'bootstrap_servers' (did you mean 'servers'?)", err, 1, true)
  end))
end)
