-- nginx with the lua module (Debian's libnginx-mod-http-lua, on OpenResty's
-- LuaJIT) running examples/nginx on producers.ngx: one producer per worker,
-- HTTP requests in, messages out, a send that waits for its offset, the
-- counters of both workers, a reload in the middle of a burst, a graceful
-- quit; every accepted request's message read back once with kcat.
local producers = require("producers")
local cjson = require("cjson")
local H = require("helpers")

local lua = os.getenv("PRODUCERS_LUA") or "lua5.4"
local describe_jit = lua == "luajit" and describe or pending

local sh, q = H.sh, H.shell_quote
local root, build = H.dirs("build-luajit")
local read = H.read
local N = require("support.nginx")
local write, children, count = N.write, N.children, N.count

local function count_lines(path)
  local n = 0
  for _ in (read(path) or ""):gmatch("\n") do n = n + 1 end
  return n
end

local function pause() sh("sleep 0.05") end

-- examples/nginx/nginx.conf with its ${...} filled in, and `replace`
-- (exact text -> text, each found exactly once) applied.
local function render(port, replace)
  local text = assert(read(root .. "/examples/nginx/nginx.conf"))
  local vars = { PRODUCERS_ROOT = root, PRODUCERS_BUILD_DIR = build, PORT = tostring(port) }
  text = text:gsub("%${([%w_]+)}", function(name)
    return assert(vars[name], "nginx.conf: unknown placeholder " .. name)
  end)
  for from, to in pairs(replace or {}) do text = N.replace_once(text, from, to) end
  return text
end

local stop, quit = N.stop, N.quit

-- An nginx master (+ 2 workers) running examples/nginx, answering on its port.
local function start(bootstraps, replace)
  return N.start(bootstraps, function(n) write(n.conf, render(n.port, replace)) end, function(n)
    local code = sh(("curl -s -o /dev/null -w '%%{http_code}' --max-time 2 %s/events"):format(n.url))
    return code == "405"      -- GET: events.handle ran
  end)
end

-- A curl config: POST /events for seq = from..to (key "k<seq>").
local function requests(path, n, topic, from, to)
  local out = {}
  for seq = from, to do
    out[#out + 1] = ('url = "%s/events?topic=%s&key=k%d&seq=%d"'):format(n.url, topic, seq, seq)
    out[#out + 1] = 'output = "/dev/null"'
  end
  write(path, table.concat(out, "\n") .. "\n")
end

-- (stderr apart: with -Z, curl 7.88 prints a progress meter there despite -s)
local CURL = "curl -s -Z --parallel-max %d %s --data-binary @%s -H 'Content-Type: application/json'"
  .. " -w '%%{http_code} %%{url_effective} %%header{x-request-id}\\n' -K %s"

-- "202 http://...seq=N <request id>" lines -> { [seq] = { code, id } }, count
local function responses(text, into)
  local n = 0
  for code, seq, id in text:gmatch("(%d+) %S-seq=(%d+) (%x*)\n") do
    seq = tonumber(seq)
    assert(into[seq] == nil, "two responses for seq " .. seq)
    into[seq] = { code = code, id = id }
    n = n + 1
  end
  return n
end

describe_jit("nginx (lua module, LuaJIT): one producer per worker #nginx", function()
  local m, n
  setup(function()
    math.randomseed(os.time() + math.floor(os.clock() * 1e6))
    m = producers.mock_cluster(1)
  end)
  teardown(function()
    stop(n)
    n = nil
    m:close()
  end)
  after_each(function()
    stop(n)
    n = nil
  end)

  it("delivers every request exactly once across a reload in the middle of a burst and a quit", function()
    local topic = H.topic("nginx")
    m:create_topic(topic, 3, 1)
    n = start(m:bootstraps())
    local dir = n.prefix
    local small = '{"note":"caf\195\169 \\"quoted\\" back\\\\slash / slash"}'
    write(dir .. "/small.json", small)
    local big = '{"pad":"' .. ("0123456789"):rep(200) .. '"}'
    write(dir .. "/big.json", big)

    -- phase 1: 100 requests, 4 at a time
    requests(dir .. "/one.cfg", n, topic, 1, 100)
    local out1, ok1 = sh(CURL:format(4, "", dir .. "/small.json", dir .. "/one.cfg") .. " 2>/dev/null")
    assert.is_true(ok1, out1)
    local got = {}
    assert.equal(100, responses(out1, got), out1)

    -- send: the request waits (without blocking the worker) for the offset
    local sent = sh(("curl -s -X POST --data-binary @%s '%s/events?topic=%s&key=w&wait=1'")
      :format(dir .. "/small.json", n.url, topic))
    local r = cjson.decode(sent)
    assert.is_true(r.offset >= 0 and r.partition >= 0, sent)

    -- counters: both workers' deliveries, in the shared dict
    local metrics
    assert.is_true(H.wait_until(function()
      metrics = cjson.decode((sh(("curl -s %s/metrics"):format(n.url))))
      return metrics.delivered == 101 and metrics.queued == 0
    end, 10, pause), cjson.encode(metrics))
    assert.same({ delivered = 101, failed = 0, purged = 0, queued = 0, unreported = 0 }, metrics)

    -- phase 2: 200 requests, 10 at a time, each body uploaded at 20 kB/s
    -- (~0.1 s per request, so some are in flight at the reload)
    local old_workers = children(n.pid)
    assert.equal(2, #old_workers)
    requests(dir .. "/two.cfg", n, topic, 101, 300)
    sh(("( %s > %s/two.out 2> %s/two.err; echo $? > %s/two.done ) </dev/null >/dev/null 2>&1 &")
      :format(CURL:format(10, "--limit-rate 20k", dir .. "/big.json", dir .. "/two.cfg"), dir, dir, dir))
    assert.is_true(H.wait_until(function() return count_lines(dir .. "/two.out") >= 20 end, 30, pause),
      "phase 2 does not progress: " .. (read(dir .. "/two.err") or ""))
    local out, ok = sh(n.cmd("-s reload"))
    assert.is_true(ok, out)
    local before_reload_done = count_lines(dir .. "/two.out")
    assert.is_true(H.wait_until(function() return read(dir .. "/two.done") ~= nil end, 60, pause),
      "phase 2 did not finish")
    assert.equal("0\n", read(dir .. "/two.done"), read(dir .. "/two.err"))
    assert.equal(200, responses(read(dir .. "/two.out"), got))

    local took = quit(n, 30)

    -- every request answered 202 with a request id
    local ids = {}
    for seq = 1, 300 do
      local r = got[seq]
      assert.is_not_nil(r, "no response for seq " .. seq)
      assert.equal("202", r.code, "seq " .. seq)
      assert.matches("^%x+$", r.id)
      assert.is_nil(ids[r.id], "request id twice: " .. r.id)
      ids[r.id] = seq
    end

    -- the reload landed mid-burst: phase 2 was served by old and new workers
    local old, served_old, served_new = {}, 0, 0
    for _, pid in ipairs(old_workers) do old[pid] = true end
    local access = read(dir .. "/logs/access.log") or ""
    for seq, pid in access:gmatch("seq=(%d+) HTTP/1%.1\" %d+ %x+ [%d.]+ pid=(%d+)") do
      if tonumber(seq) > 100 then
        if old[pid] then served_old = served_old + 1 else served_new = served_new + 1 end
      end
    end
    assert.is_true(served_old > 0 and served_new > 0,
      ("phase 2: %d requests by old workers, %d by new ones (%d answered before the reload signal)")
        :format(served_old, served_new, before_reload_done))

    -- each accepted request's message, once, as sent
    local records = H.kcat_read(m:bootstraps(), topic)
    local seen = {}
    for i = #records, 1, -1 do
      if records[i].key == "w" then table.remove(records, i) end   -- the send
    end
    for _, r in ipairs(records) do
      local msg = cjson.decode(r.value)
      local seq = ids[msg.request_id]
      assert.is_not_nil(seq, "message for an unknown request: " .. r.value)
      assert.is_nil(seen[seq], "message twice for seq " .. tostring(seq))
      seen[seq] = true
      assert.equal("k" .. seq, r.key)
      assert.same({ { "request_id", msg.request_id } }, r.headers)
      assert.equal("POST", msg.method)
      assert.equal("/events", msg.uri)
      assert.same({ topic = topic, key = "k" .. seq, seq = tostring(seq) }, msg.args)
      assert.equal(seq <= 100 and small or big, msg.body)
    end
    assert.equal(300, #records)

    -- 2 workers before the reload, 2 after: each made a producer and closed it
    local log = n.log()
    assert.equal(4, count(log, "producers: producer 'default' ready in worker"), log)
    assert.equal(4, count(log, "producers: producer 'default' closed in worker"), log)
    assert.equal(4, count(log, " 0 failed, 0 purged (not delivered)"), log)
    for _, level in ipairs({ "[error]", "[crit]", "[alert]", "[emerg]" }) do
      assert.equal(0, count(log, level), log)
    end
    assert.is_nil(log:find("exited on signal", 1, true), log)
    assert.is_true(took < 15, "quit took " .. took .. " s")
  end)

  it("answers 503 on a full queue and quits within close_timeout with the rest reported failed", function()
    -- a broker that is not there: nothing is delivered, the queue (3) fills
    local nowhere = H.refused_address()
    n = start(nowhere, {
      ['require("producers.ngx").init(require("events").options())'] =
        'require("producers.ngx").init(require("events").options{ close_timeout = 1.5, '
        .. 'config = { ["queue.buffering.max.messages"] = 3 } })',
    })
    local dir = n.prefix
    write(dir .. "/body.json", "{}")
    requests(dir .. "/full.cfg", n, "nowhere", 1, 20)
    local out, ok = sh(CURL:format(1, "", dir .. "/body.json", dir .. "/full.cfg") .. " 2>/dev/null")
    assert.is_true(ok, out)
    local got = {}
    assert.equal(20, responses(out, got), out)
    local accepted, full = 0, 0
    for _, r in pairs(got) do
      if r.code == "202" then accepted = accepted + 1 elseif r.code == "503" then full = full + 1 end
    end
    assert.equal(20, accepted + full, out)

    -- a 503 in full (a new connection may reach the other worker, whose
    -- queue may still have room)
    local body
    assert.is_true(H.wait_until(function()
      body = sh(("curl -s -i -X POST '%s/events?topic=nowhere'"):format(n.url))
      if body:match("^HTTP/1%.1 202") then accepted = accepted + 1 end
      return body:match("^HTTP/1%.1 503") ~= nil
    end, 10), body)
    full = full + 1
    assert.is_true(accepted >= 3 and accepted <= 6, out)   -- 3 per worker that got requests
    assert.matches("\r\nRetry%-After: 1\r\n", body)
    assert.matches('"code":"_QUEUE_FULL"', body, 1, true)

    local took = quit(n, 20)
    assert.is_true(took < 6, "quit took " .. took .. " s")   -- close_timeout 1.5 + purge, workers in parallel
    local log = n.log()
    assert.equal(full, count(log, "Local: Queue full (_QUEUE_FULL)"), log)
    -- every queued message's report was served at exit, as a failure, to
    -- events.lua's on_delivery; the library adds one summary line a worker
    assert.equal(accepted, count(log, "events: delivery failed: request "), log)
    assert.equal(accepted, count(log, "(_PURGE_QUEUE)"), log)
    local purged, lines = 0, 0
    for k in log:gmatch("producers: producer 'default' closed in worker %d+: 0 delivered, 0 failed, (%d+) purged") do
      purged, lines = purged + tonumber(k), lines + 1
    end
    assert.equal(2, lines, log)
    assert.equal(accepted, purged, log)
    assert.equal(0, count(log, "closed with "), log)      -- the core's own line is folded into ours
    assert.is_nil(log:find("exited on signal", 1, true), log)
  end)

  it("counts what a worker killed with -9 held as unreported, and its replacement says so once", function()
    local nowhere = H.refused_address()      -- nothing is delivered: messages stay queued
    n = start(nowhere, {
      ['require("producers.ngx").init(require("events").options())'] =
        'require("producers.ngx").init(require("events").options{ close_timeout = 1.5 })',
    })
    local dir = n.prefix
    write(dir .. "/body.json", "{}")
    requests(dir .. "/q.cfg", n, "nowhere", 1, 30)
    local out, ok = sh(CURL:format(4, "", dir .. "/body.json", dir .. "/q.cfg") .. " 2>/dev/null")
    assert.is_true(ok, out)
    local got = {}
    assert.equal(30, responses(out, got), out)
    for seq = 1, 30 do assert.equal("202", got[seq].code) end
    local metrics
    local function read_metrics()
      metrics = cjson.decode((sh(("curl -s %s/metrics"):format(n.url))))
      return metrics
    end
    assert.is_true(H.wait_until(function() return read_metrics().queued == 30 end, 10, pause), cjson.encode(metrics))

    -- the worker that took the most requests is killed
    local per = {}
    for pid in (read(dir .. "/logs/access.log") or ""):gmatch("/events%?[^\n]- 202 .- pid=(%d+)") do
      per[pid] = (per[pid] or 0) + 1
    end
    local victim, held = nil, 0
    for pid, k in pairs(per) do if k > held then victim, held = pid, k end end
    assert.is_not_nil(victim, read(dir .. "/logs/access.log"))
    local before = children(n.pid)
    sh("kill -KILL " .. victim)
    local line = "producers: worker " .. victim .. " died without closing producer 'default' with " .. held
      .. " message(s) unreported (counted in 'unreported', no longer in 'queued')"
    assert.is_true(H.wait_until(function() return count(n.log(), line) == 1 end, 10, pause), n.log())
    assert.equal(#before, #children(n.pid))                         -- replaced
    assert.same({ delivered = 0, failed = 0, purged = 0, queued = 30 - held, unreported = held }, read_metrics())

    quit(n, 20)
    local log = n.log()
    assert.equal(1, count(log, "died without closing"), log)
    local purged = 0
    for k in log:gmatch("producers: producer 'default' closed in worker %d+: 0 delivered, 0 failed, (%d+) purged") do
      purged = purged + tonumber(k)
    end
    assert.equal(30 - held, purged, log)                            -- with the unreported: all 30
  end)

  -- ngx_lua runs no Lua under `nginx -t` (it skips init_by_lua there), so
  -- the check in init_by_lua fails the start and the reload instead.
  it("refuses to start, and a reload keeps the old workers, on a bad option, naming it", function()
    local function bad(options)
      return {
        ['assert(require("producers.ngx").check(require("events").options()))'] =
          'assert(require("producers.ngx").check(require("events").options' .. options .. '))',
      }
    end
    local cases = {
      { '{ config = { ["linger.msec"] = 5 } }', "unknown property 'linger.msec'" },
      { '{ config = { acks = "many" } }', "invalid value for 'acks'" },
      { '{ close_timeout = 0.5 }', "option 'close_timeout' (0.5 s) must be longer than config's reconnect.backoff.max.ms" },
      { '{ shared_dict = "nope" }', "no lua_shared_dict named 'nope'" },
      { '{ bootstrap_servers = false }', "option 'bootstrap_servers'" },
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(start, m:bootstraps(), bad(case[1]))
      assert.is_false(ok, case[1])
      assert.matches("init_by_lua error", err, 1, true)
      assert.matches(case[2], err, 1, true)
    end

    -- a reload with a bad option: the master refuses it, the workers stay
    n = start(m:bootstraps())
    local workers = children(n.pid)
    write(n.conf, render(n.port, bad(cases[1][1])))
    local out, ok = sh(n.cmd("-s reload"))
    assert.is_true(ok, out)
    assert.is_true(H.wait_until(function() return n.log():find("linger.msec", 1, true) ~= nil end, 10, pause),
      n.log())
    assert.matches("init_by_lua error", n.log(), 1, true)
    assert.same(workers, children(n.pid))
    local code = sh(("curl -s -o /dev/null -w '%%{http_code}' -X POST '%s/events?topic=t'"):format(n.url))
    assert.equal("202", code)
  end)
end)
