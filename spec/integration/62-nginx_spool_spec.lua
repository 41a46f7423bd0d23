-- producers.ngx with the durable spool (issue #22, docs/design/spool.md
-- I17) in nginx with 2 workers against the real single-node broker: each
-- worker spools into its own folder under the spool dir and adopts the
-- folders of workers that are gone. A worker killed -9 under load;
-- `nginx -s quit` during a broker outage, then nginx started again; a
-- reload during an outage: every request answered 200 (its message was
-- in the spool before the answer) is on the broker, read back with kcat.
--
-- Copies: a message can be written twice only where it was in flight
-- when its worker died (kill -9) or was re-sent after a timeout; the
-- spec prints the copies and bounds them by the in-flight window (5
-- requests of at most 100 messages, plus one batch of reports not yet
-- taken, per worker).
--
-- Runs under any Lua (it drives nginx, curl and kcat); nginx loads the
-- LuaJIT build, as in 60-nginx_spec.lua. Leaves the broker running.
local K = require("integration.kafka_helpers")
local H = require("helpers")

local sh, q, read = K.sh, K.q, H.read
local N = require("support.nginx")
local write, alive, children, count = N.write, N.alive, N.children, N.count
local root, build = N.luajit_build()

local WINDOW = 2 * (5 + 1) * 100     -- per worker that died: see the header

local CONF = [[
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 2;
pid logs/nginx.pid;
error_log logs/error.log info;
worker_shutdown_timeout 10s;
env KAFKA_BOOTSTRAP_SERVERS;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
    lua_package_path "${ROOT}/lua/?.lua;${ROOT}/lua/?/init.lua;${PREFIX}/?.lua;;";
    lua_package_cpath "${BUILD}/?.so;;";
    init_worker_by_lua_block { require("producers.ngx").init(require("opts")) }
    exit_worker_by_lua_block { require("producers.ngx").exit() }
    server {
        listen 127.0.0.1:${PORT};
        # 200 only once the message is in the worker's spool
        location = /content {
            content_by_lua_block {
                local ok, err, name = require("producers.ngx").produce(ngx.var.arg_topic, ngx.var.arg_seq, ngx.var.arg_seq)
                if not ok then
                    ngx.log(ngx.ERR, "spool burst: produce: ", err, " ", name)
                    return ngx.exit(503)
                end
                ngx.say("ok")
            }
        }
        location = /ping { content_by_lua_block { ngx.say("pong") } }
    }
}
]]

-- nginx with 2 workers spooling into spool_dir.
local function start(env, spool_dir)
  return N.start(env.KAFKA_BOOTSTRAP, function(n)
    local vars = { ROOT = root, BUILD = build, PREFIX = n.prefix, PORT = tostring(n.port) }
    write(n.conf, (CONF:gsub("%${([%w_]+)}", function(k) return assert(vars[k], k) end)))
    write(n.prefix .. "/opts.lua", ([[
return {
  bootstrap_servers = os.getenv("KAFKA_BOOTSTRAP_SERVERS"),
  spool = { dir = %q },
  spool_adopt_interval = 1,
  close_timeout = 2,
  config = { ["broker.address.family"] = "v4", ["message.timeout.ms"] = 3000, ["linger.ms"] = 5,
             ["batch.num.messages"] = 100, ["max.in.flight.requests.per.connection"] = 5 },
}
]]):format(spool_dir))
  end, function(n)
    return sh(("curl -s --max-time 2 %s/ping"):format(n.url)) == "pong\n"
  end)
end

--- A burst of requests: `per` requests at `rate`/s, seqs from `first`,
-- new connections each (both workers serve); curl's pid kept in
-- n.background. fail_early: the first refused connection (nginx gone)
-- ends curl. Returns a function giving the lines written so far.
local function burst(n, topic, first, per, rate, name, fail_early)
  local lines = {}
  for i = 0, per - 1 do
    lines[#lines + 1] = ('url = "%s/content?topic=%s&seq=%d"'):format(n.url, topic, first + i)
    lines[#lines + 1] = 'output = "/dev/null"'
  end
  local cfg, out = ("%s/%s.cfg"):format(n.prefix, name), ("%s/%s.out"):format(n.prefix, name)
  write(cfg, table.concat(lines, "\n") .. "\n")
  local pid = sh(("curl -s %s --rate %d/s -H 'Connection: close' -w '%%{http_code} %%{url_effective}\\n' "
    .. "-K %s > %s 2>/dev/null </dev/null & echo $!"):format(fail_early and "--fail-early" or "", rate, q(cfg),
    q(out))):match("%d+")
  n.background[#n.background + 1] = pid
  return function() return read(out) or "" end, pid
end

--- A burst (as burst's arguments) that runs until `before` requests
-- are answered, then the broker goes down and the burst goes on until
-- `during` more are answered. Returns burst's function.
local function burst_into_outage(n, topic, per, rate, name, before, during, fail_early)
  local out = burst(n, topic, 1, per, rate, name, fail_early)
  assert(K.wait_for(function() return count(out(), "\n") >= before end, 20), "the burst does not progress")
  K.must_broker("kill-node", 1)
  local at_down = count(out(), "\n")
  assert(K.wait_for(function() return count(out(), "\n") >= at_down + during end, 30),
    "no answers while the broker is down")
  return out
end

--- The seqs answered 200 in curl's output text.
local function answered_200(text)
  local set, n = {}, 0
  for code, seq in text:gmatch("(%d+) %S-seq=(%d+)\n") do
    if code == "200" then set[seq] = true; n = n + 1 end
  end
  return set, n
end

--- Waits until every seq of want is on the broker; returns the missing
-- (a list), the records' copies beyond one, the records read.
local function wait_delivered(topic, want, timeout)
  local missing, dups, records
  K.wait_for(function()
    records = K.kcat_read(topic, "plaintext")
    local copies = {}
    for _, r in ipairs(records) do copies[r.value] = (copies[r.value] or 0) + 1 end
    missing, dups = {}, 0
    for seq in pairs(want) do if not copies[seq] then missing[#missing + 1] = seq end end
    for _, k in pairs(copies) do dups = dups + k - 1 end
    return #missing == 0
  end, timeout or 60, function() K.sleep(0.5) end)
  table.sort(missing)
  return missing, dups, records
end

local function wait_curl(n, timeout)
  return K.wait_for(function()
    for _, pid in ipairs(n.background) do if alive(pid) then return false end end
    return true
  end, timeout or 60)
end

local describe_nginx = N.describe_nginx(build)

describe_nginx("producers.ngx with a spool, 2 workers, real broker #integration #nginx", function()
  local env, n, spool_dir
  local spools = {}

  setup(function()
    env = K.env()
    assert(K.running(), "the single-node broker must be running before this spec")
  end)
  before_each(function()
    spool_dir = ("/tmp/spoolk-nginx-%d-%04x"):format(os.time(), math.random(0, 0xffff))
    spools[#spools + 1] = spool_dir
  end)
  after_each(function()
    N.stop(n)
    n = nil
    if not K.running() then K.broker("start-node", 1) end
  end)
  teardown(function()
    for _, d in ipairs(spools) do os.execute("rm -rf " .. q(d)) end
  end)

  --- Asserts every answered seq delivered; prints the numbers.
  local function check(topic, text, what, log)
    local want, n200 = answered_200(text)
    local missing, dups = wait_delivered(topic, want, 90)
    print(("\n  %s: %d answered 200, %d missing, %d extra copies"):format(what, n200, #missing, dups))
    assert.equal(0, #missing, ("%d of %d answered 200 missing (e.g. %s)\n%s"):format(#missing, n200,
      table.concat(missing, ",", 1, math.min(10, #missing)), log():sub(-4000)))
    assert.is_true(n200 > 100, "only " .. n200 .. " requests answered 200")
    assert.is_true(dups <= WINDOW, dups .. " extra copies")
    return n200
  end

  K.it("a worker killed -9 under load, the broker down: its spool is adopted, every answered message delivered",
    function()
    local topic = K.topic("ngx-spool-kill")
    K.create_topic(topic, 3)
    n = start(env, spool_dir)
    local workers = children(n.pid)
    assert.equal(2, #workers)
    -- the broker down: the workers' spools fill; one worker dies holding its records
    local out = burst_into_outage(n, topic, 2000, 300, "kill", 300, 300)
    sh("kill -KILL " .. workers[1])
    assert.truthy(wait_curl(n, 60), "curl still runs")
    K.must_broker("start-node", 1)
    local log = n.log
    check(topic, out(), "worker killed -9", log)
    -- the dead worker's folder was adopted by a live one
    assert.truthy(K.wait_for(function() return log():find("adopted the spool " .. spool_dir .. "/" .. workers[1]
      .. "-", 1, true) end, 10), log():sub(-3000))
  end)

  K.it("nginx -s quit during a broker outage, then started again: every answered message delivered", function()
    local topic = K.topic("ngx-spool-quit")
    K.create_topic(topic, 3)
    n = start(env, spool_dir)
    -- > message.timeout.ms of answers during the outage
    local out = burst_into_outage(n, topic, 100000, 200, "quit", 200, 600, true)
    N.quit(n, 30)
    wait_curl(n, 10)
    local text, log1 = out(), n.log()
    N.stop(n)                                         -- the prefix goes; the spool dir stays
    K.must_broker("start-node", 1)
    n = start(env, spool_dir)                         -- the next nginx adopts the old folders
    check(topic, text, "quit during an outage, started again", function() return log1 .. n.log() end)
    assert.equal(0, count(log1, "spool burst: produce"), log1:sub(-3000))
  end)

  K.it("a reload during a broker outage: every answered message delivered", function()
    local topic = K.topic("ngx-spool-reload")
    K.create_topic(topic, 3)
    n = start(env, spool_dir)
    local out = burst_into_outage(n, topic, 2500, 200, "reload", 200, 400)
    local old = children(n.pid)
    local o, ok = sh(n.cmd("-s reload"))
    assert.is_true(ok, o)
    -- the old workers leave (close_timeout 2 s) with their spools full
    assert.truthy(K.wait_for(function()
      for _, pid in ipairs(old) do if alive(pid) then return false end end
      return true
    end, 30), "the old workers did not leave")
    K.must_broker("start-node", 1)
    assert.truthy(wait_curl(n, 60), "curl still runs")
    check(topic, out(), "reload during an outage", n.log)
    assert.equal(0, count(n.log(), "spool burst: produce"), n.log():sub(-3000))
  end)
end)
