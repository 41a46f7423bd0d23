-- nginx (Debian's nginx with the lua module, on OpenResty's LuaJIT) using
-- producers.ngx and producers.resty_kafka against the real single-node
-- broker: a burst through log_by_lua and content_by_lua across a 3 s broker
-- outage, a reload and a quit (every request answered 200 is on the broker
-- once); send waiting while the broker is down without holding up the
-- worker; a delivery callback using a cosocket and ngx.sleep; the
-- lua-resty-kafka README's example with only the requires changed.
--
-- Runs under any Lua (it drives nginx and kcat); nginx loads the LuaJIT
-- build: $PRODUCERS_NGINX_BUILD_DIR, else $PRODUCERS_BUILD_DIR when
-- PRODUCERS_LUA is luajit, else build-luajit. It stops and restarts the
-- broker and leaves it running, as it found it.
local K = require("integration.kafka_helpers")
local H = require("helpers")
local cjson = require("cjson")

local sh, q, read = K.sh, K.q, H.read
local N = require("support.nginx")
local write, alive, children, count = N.write, N.alive, N.children, N.count
local root, build = N.luajit_build()

-- The nginx.conf of these tests; ${...} filled in by conf().
local CONF = [[
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes ${WORKERS};
pid logs/nginx.pid;
error_log logs/error.log info;
worker_shutdown_timeout 10s;
env KAFKA_BOOTSTRAP_SERVERS;
events { worker_connections 1024; }
http {
    access_log logs/access.log;
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
    lua_package_path "${ROOT}/lua/?.lua;${ROOT}/lua/?/init.lua;${PREFIX}/?.lua;;";
    lua_package_cpath "${BUILD}/?.so;;";
    lua_shared_dict producers 1m;
    lua_shared_dict seen 1m;

    init_by_lua_block {
        assert(require("producers.ngx").check(require("opts")))
    }
    init_worker_by_lua_block {
        require("producers.ngx").init(require("opts"))
    }
    exit_worker_by_lua_block {
        require("producers.ngx").exit()
    }

    server {
        listen 127.0.0.1:${PORT};

        # the burst: one message per request, produced in the log phase
        # (after the answer) or in the content phase (before it)
        location = /log {
            content_by_lua_block { ngx.say("ok") }
            log_by_lua_block {
                local ok, err = require("producers.ngx").produce(ngx.var.arg_topic, ngx.var.arg_seq, ngx.var.arg_seq)
                if not ok then ngx.log(ngx.ERR, "burst: produce: ", err) end
            }
        }
        location = /content {
            content_by_lua_block {
                local ok, err = require("producers.ngx").produce(ngx.var.arg_topic, ngx.var.arg_seq, ngx.var.arg_seq)
                if not ok then return ngx.exit(503) end
                ngx.say("ok")
            }
        }

        # send with the broker down (a port nothing listens on)
        location = /send_down {
            content_by_lua_block {
                local kafka = require("producers.ngx")
                local down = kafka.new{ bootstrap_servers = "${NOWHERE}", name = "down", close_timeout = 1.5 }
                local t0 = ngx.now()
                local r, err = down:send("t", "k", "v", { timeout = tonumber(ngx.var.arg_timeout) })
                ngx.update_time()
                ngx.say(require("cjson").encode({ ok = r ~= nil, err = err, waited = ngx.now() - t0 }))
            }
        }
        location = /down_queued {
            content_by_lua_block {
                local c = require("producers.ngx").metrics("down")
                ngx.say(c and c.queued or -1)
            }
        }
        location = /ping {
            content_by_lua_block { ngx.say("pong") }
        }

        # a delivery callback that sleeps and calls /record over a cosocket
        location = /cb {
            content_by_lua_block {
                local id = ngx.var.arg_id
                assert(require("producers.ngx").produce(ngx.var.arg_topic, id, id, { on_delivery = function(err, r)
                    local t0 = ngx.now()
                    ngx.sleep(0.05)
                    ngx.update_time()
                    local slept = ngx.now() - t0
                    local sock = ngx.socket.tcp()
                    sock:settimeouts(1000, 1000, 1000)
                    assert(sock:connect("127.0.0.1", ${PORT}))
                    assert(sock:send(("GET /record?id=%s&offset=%s&phase=%s&slept=%.3f HTTP/1.0\r\nHost: x\r\n\r\n")
                      :format(id, tostring(r.offset), ngx.get_phase(), slept)))
                    local status = assert(sock:receive("*l"))
                    sock:close()
                    ngx.shared.seen:set(id .. ":status", status)
                end }))
                ngx.say("queued")
            }
        }
        location = /record {
            content_by_lua_block {
                local a = ngx.req.get_uri_args()
                ngx.shared.seen:set(a.id, ("%s %s %s"):format(a.offset, a.phase, a.slept))
                ngx.say("recorded")
            }
        }
        location = /seen {
            content_by_lua_block {
                local id = ngx.var.arg_id
                local v, s = ngx.shared.seen:get(id), ngx.shared.seen:get(id .. ":status")
                ngx.say(v and s and (v .. "|" .. s) or "")
            }
        }

        location = /metrics {
            content_by_lua_block { ngx.say(require("cjson").encode(require("producers.ngx").metrics())) }
        }

        # lua-resty-kafka's README example (resty_example.lua)
        location = /test {
            content_by_lua_file ${PREFIX}/resty_example.lua;
        }
    }
}
]]

-- lua-resty-kafka's README Synopsis (github.com/doujiang24/lua-resty-kafka),
-- as written there; the test changes the two requires and the port only.
local RESTY_EXAMPLE = [=[
                local cjson = require "cjson"
                local client = require "resty.kafka.client"
                local producer = require "resty.kafka.producer"

                local broker_list = {
                    { host = "127.0.0.1", port = 9092 },
                }

                local key = "key"
                local message = "halo world"

                -- usually we do not use this library directly
                local cli = client:new(broker_list)
                local brokers, partitions = cli:fetch_metadata("test")
                if not brokers then
                    ngx.say("fetch_metadata failed, err:", partitions)
                end
                ngx.say("brokers: ", cjson.encode(brokers), "; partitions: ", cjson.encode(partitions))


                -- sync producer_type
                local p = producer:new(broker_list)

                local offset, err = p:send("test", key, message)
                if not offset then
                    ngx.say("send err:", err)
                    return
                end
                ngx.say("send success, offset: ", tonumber(offset))

                -- this is async producer_type and bp will be reused in the whole nginx worker
                local bp = producer:new(broker_list, { producer_type = "async" })

                local ok, err = bp:send("test", key, message)
                if not ok then
                    ngx.say("send err:", err)
                    return
                end

                ngx.say("send success, ok:", ok)
]=]

local replace_once, stop = N.replace_once, N.stop

-- An nginx master with `workers` workers running CONF, answering.
local function start(env, workers)
  return N.start(env.KAFKA_BOOTSTRAP, function(n)
    local vars = { WORKERS = tostring(workers), ROOT = root, BUILD = build, PREFIX = n.prefix,
                   PORT = tostring(n.port), NOWHERE = H.refused_address() }
    write(n.conf, (CONF:gsub("%${([%w_]+)}", function(k) return assert(vars[k], k) end)))
    write(n.prefix .. "/opts.lua", ([[
return {
  bootstrap_servers = os.getenv("KAFKA_BOOTSTRAP_SERVERS"),
  shared_dict = "producers",
  config = { ["broker.address.family"] = "v4" },
}
]]))
    local example = replace_once(RESTY_EXAMPLE, 'require "resty.kafka.client"', 'require("producers.resty_kafka").client')
    example = replace_once(example, 'require "resty.kafka.producer"', 'require "producers.resty_kafka"')
    example = replace_once(example, "port = 9092", "port = " .. env.KAFKA_BOOTSTRAP:match(":(%d+)"))
    write(n.prefix .. "/resty_example.lua", example)
  end, function(n)
    return sh(("curl -s --max-time 2 %s/ping"):format(n.url)) == "pong\n"
  end)
end

local function get(n, path)
  return (sh(("curl -s --max-time 20 '%s%s'"):format(n.url, path)))
end

local quit = N.quit

local describe_nginx = N.describe_nginx(build)

describe_nginx("producers.ngx in nginx against a real broker #integration #nginx", function()
  local env, n

  setup(function()
    env = K.env()
    assert(K.running(), "the single-node broker must be running before this spec")
  end)
  after_each(function()
    stop(n)
    n = nil
  end)
  teardown(function()
    if not K.running() then
      local out, ok = K.broker("start-node", 1)
      if not ok then io.stdout:write("\nbroker.sh start-node 1 failed:\n", out, "\n") end
    end
  end)

  K.it("delivers every request answered 200 once across a 3 s broker outage, a reload and a quit", function()
    local topic = K.topic("nginx")
    K.create_topic(topic, 3)
    n = start(env, 2)
    local dir = n.prefix
    assert.equal(2, #children(n.pid))
    -- connected: one message through
    assert.equal("ok\n", get(n, "/content?topic=" .. topic .. "&seq=0"))
    assert.truthy(K.wait_for(function()
      return cjson.decode(get(n, "/metrics")).delivered == 1
    end, 20), n.log())

    -- two clients, new connections each (both workers serve), 150 requests/s
    -- each, alternating the log and content locations
    local per, rate = 2500, 150
    for c = 1, 2 do
      local lines = {}
      for i = 1, per do
        local seq = (i - 1) * 2 + c
        lines[#lines + 1] = ('url = "%s/%s?topic=%s&seq=%d"'):format(n.url, seq % 4 < 2 and "log" or "content", topic, seq)
        lines[#lines + 1] = 'output = "/dev/null"'
      end
      write(("%s/burst%d.cfg"):format(dir, c), table.concat(lines, "\n") .. "\n")
      -- --fail-early: the first refused connection (after the quit) ends
      -- curl, which then writes out what it buffered
      local pid = sh(("curl -s --fail-early --rate %d/s -H 'Connection: close' -w '%%{http_code} %%{url_effective}\\n' "
        .. "-K %s/burst%d.cfg > %s/burst%d.out 2>/dev/null </dev/null & echo $!")
        :format(rate, dir, c, dir, c)):match("%d+")
      n.background[#n.background + 1] = pid
    end
    local function answered()
      return count((read(dir .. "/burst1.out") or "") .. (read(dir .. "/burst2.out") or ""), "\n")
    end
    assert.truthy(K.wait_for(function() return answered() >= 200 end, 20), "the burst does not progress")

    -- the broker goes away for 3 s, then comes back (start-node waits until it serves)
    K.must_broker("kill-node", 1)
    local during0 = answered()
    K.sleep(3)
    local during = answered() - during0
    K.must_broker("start-node", 1)
    local t_up = K.now()

    -- reload, then quit, within 3 s of the restart
    local old = children(n.pid)
    local out, ok = sh(n.cmd("-s reload"))
    assert.is_true(ok, out)
    local was = {}
    for _, pid in ipairs(old) do was[pid] = true end
    assert.truthy(K.wait_for(function()     -- the old ones may still be delivering
      local new = 0
      for _, pid in ipairs(children(n.pid)) do if not was[pid] then new = new + 1 end end
      return new == 2
    end, 2.5), "no new workers after the reload")
    K.sleep(0.2)
    local t_quit_sent = K.now()
    assert.is_true(t_quit_sent - t_up < 3, ("quit %.1f s after the broker was back"):format(t_quit_sent - t_up))
    quit(n, 30)
    assert.truthy(K.wait_for(function()
      for _, pid in ipairs(n.background) do if alive(pid) then return false end end
      return true
    end, 10), "curl still runs after the quit")

    -- every seq answered 200 is on the broker once, and nothing else is
    local ok200, codes = { ["0"] = true }, {}
    local n200 = 1
    for c = 1, 2 do
      for code, seq in (read(("%s/burst%d.out"):format(dir, c)) or ""):gmatch("(%d+) %S-seq=(%d+)\n") do
        codes[seq] = code
        if code == "200" then ok200[seq] = true; n200 = n200 + 1 end
      end
    end
    local records = K.kcat_read(topic, "plaintext")
    local seen, extra = {}, 0
    for _, r in ipairs(records) do
      assert.is_nil(seen[r.value], "twice on the broker: seq " .. tostring(r.value))
      seen[r.value] = true
      assert.equal(r.key, r.value)
      if not ok200[r.value] then
        extra = extra + 1
        if os.getenv("DEBUG_EXTRA") then print("extra", r.value, codes[r.value]) end
      end
    end
    local missing = {}
    for seq in pairs(ok200) do if not seen[seq] then missing[#missing + 1] = seq end end
    table.sort(missing)
    local log = n.log()
    assert.equal(0, #missing, ("%d of %d answered 200 missing (e.g. %s)\n%s")
      :format(#missing, n200, table.concat(missing, ",", 1, math.min(10, #missing)), log:sub(-6000)))
    assert.is_true(n200 > 1000, "only " .. n200 .. " requests answered 200")
    assert.is_true(during > 100, "only " .. during .. " requests answered while the broker was down")
    assert.equal(0, count(log, "burst: produce"), log:sub(-4000))
    assert.equal(4, count(log, "producers: producer 'default' closed in worker"), log:sub(-4000))
    assert.equal(0, count(log, "purged (not delivered); ") - count(log, " 0 purged (not delivered); "),
      log:sub(-4000))
    print(("\n  %d answered 200 (%d while the broker was down), all on the broker once; %d more on it"
      .. " (produced, answer not 200); quit sent %.1f s after the broker was back")
      :format(n200, during, extra, t_quit_sent - t_up))
  end)

  describe("with one worker", function()
    K.it("send waits for its report while the broker is down; the worker answers others at once", function()
      n = start(env, 1)
      local dir = n.prefix
      local pid = sh(("curl -s --max-time 20 '%s/send_down?timeout=2' > %s/send.out 2>&1 </dev/null & echo $!")
        :format(n.url, dir)):match("%d+")
      n.background[#n.background + 1] = pid
      assert.truthy(K.wait_for(function() return get(n, "/down_queued") == "1\n" end, 5),
        "the send did not queue")
      for _ = 1, 5 do
        local out = sh(("curl -s -o /dev/null -w '%%{http_code} %%{time_total}' %s/ping"):format(n.url))
        local code, took = out:match("(%d+) ([%d.]+)")
        assert.equal("200", code)
        assert.is_true(tonumber(took) < 0.05, "ping took " .. took .. " s while a send waited")
      end
      assert.equal("", read(dir .. "/send.out") or "")     -- still waiting
      assert.truthy(K.wait_for(function() return (read(dir .. "/send.out") or "") ~= "" end, 10))
      local r = cjson.decode(read(dir .. "/send.out"))
      assert.is_false(r.ok)
      assert.equal("send: no delivery report within 2 s", r.err)
      assert.is_true(r.waited >= 1.95, "waited " .. r.waited)
    end)

    K.it("runs a delivery callback in the timer, where a cosocket and ngx.sleep work", function()
      local topic = K.topic("nginx-cb")
      K.create_topic(topic, 1)
      n = start(env, 1)
      assert.equal("queued\n", get(n, "/cb?topic=" .. topic .. "&id=cb1"))
      local seen
      assert.truthy(K.wait_for(function()
        seen = get(n, "/seen?id=cb1")
        return seen ~= "\n"
      end, 20), n.log())
      local offset, phase, slept, status = seen:match("^(%-?%d+) (%S+) ([%d.]+)|(.-)\r?\n$")
      assert.equal("0", offset, seen)
      assert.equal("timer", phase)
      assert.is_true(tonumber(slept) >= 0.045, seen)
      assert.equal("HTTP/1.1 200 OK", status)
      local records = K.kcat_read(topic, "plaintext")
      assert.equal(1, #records)
      assert.equal("cb1", records[1].value)
      assert.equal(0, count(n.log(), "[error]"), n.log())
    end)

    K.it("runs lua-resty-kafka's README example with only the requires changed", function()
      K.create_topic("test", 1)
      local before = #K.kcat_read("test", "plaintext")
      n = start(env, 1)
      local offsets = {}
      for i = 1, 2 do      -- the second request reuses the worker's producer
        local body = get(n, "/test")
        assert.matches("fetch_metadata failed, err:", body, 1, true)
        offsets[i] = tonumber(body:match("send success, offset: (%d+)\n"))
        assert.is_not_nil(offsets[i], body)
        assert.matches("send success, ok:true\n", body, 1, true)
      end
      -- the async messages may still be on their way: quit delivers them
      quit(n, 15)
      local records = K.kcat_read("test", "plaintext")
      assert.equal(before + 4, #records)
      local at = {}
      for i = before + 1, before + 4 do
        assert.equal("key", records[i].key)
        assert.equal("halo world", records[i].value)
        at[records[i].offset] = true
      end
      assert.is_true(at[offsets[1]] and at[offsets[2]])
      local log = n.log()
      assert.equal(1, count(log, "producers: producer 'resty_kafka' ready in worker"), log)
    end)
  end)
end)
