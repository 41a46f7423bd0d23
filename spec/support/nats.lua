-- Helpers for the NATS specs (issue #23), which run against real
-- nats-server processes started by scripts/nats/server.sh (four of
-- them: plain, auth, tls, jwt; see scripts/nats/README.md): starting and
-- stopping them, env.sh, streams made and read back with
-- scripts/nats/read.py (nats-py: a client we did not write, as kcat is
-- for Kafka), waiting for conditions (never fixed sleeps), and the
-- servers' logs when a test fails.
--
--   local N = require("support.nats")
--   N.start()                                   -- server.sh start, wipes the state dir
--   N.create_stream("ORDERS", { "orders.>" })   -- { max_msgs = 2, discard = "new" } ...
--   local recs = N.read("ORDERS")               -- { {subject, seq, headers, data, ...}, ... }
--   N.restart()                                 -- the JetStream stores survive
--   N.stop()
--   it("...", N.with_logs(function() ... end))   -- the servers' logs on failure
--
-- Credentials go to read.py through its environment, never on its
-- command line. Caveat: the specs share one set of servers per state
-- dir ($PRODUCERS_NATS_DIR, default /tmp/producers-nats) and port
-- offset ($PRODUCERS_NATS_PORT_OFFSET): give a second run its own.
local cjson = require("cjson")
local H = require("helpers")

local N = {}
local q = H.shell_quote

N.dir = os.getenv("PRODUCERS_NATS_DIR") or "/tmp/producers-nats"
N.offset = nil             -- set by N.own: server.sh gets it explicitly
N.server_sh = "scripts/nats/server.sh"
N.read_py = "scripts/nats/read.py"
N.venv = os.getenv("PRODUCERS_NATS_VENV")
  or ((os.getenv("XDG_CACHE_HOME") or (os.getenv("HOME") .. "/.cache")) .. "/producers/venv")
N.python = N.venv .. "/bin/python"

--- Calls cond() until it holds or timeout seconds (default 10) pass
-- (H.wait_until, on a monotonic clock). Returns whether it held.
N.wait_until = H.wait_until

-- ------------------------------------------------------------ server.sh

--- Gives the calling spec file servers of its own, so CTest can run the
-- spec files side by side: slot (1 to 9, one per spec file: spec/nats/
-- uses 1 restart, 2 security, 3 delivery, 4 random, 5 random_world,
-- 6 ngx; the rest are free)
-- moves the ports by base + 10 * slot and the state folder to
-- <dir>-port<that offset>, where base is $PRODUCERS_NATS_PORT_OFFSET, else a
-- tenth of $PRODUCERS_KAFKA_PORT_OFFSET (as scripts/test.sh moves a
-- second run), else 0 (scripts/integration.sh nats's own servers sit at
-- base + 0).
function N.own(slot)
  local base = tonumber(os.getenv("PRODUCERS_NATS_PORT_OFFSET") or "")
    or math.floor((tonumber(os.getenv("PRODUCERS_KAFKA_PORT_OFFSET") or "") or 0) / 10)
  N.offset = base + 10 * slot
  -- named by the offset: two runs apart in ports are apart in folders
  N.dir = (os.getenv("PRODUCERS_NATS_DIR") or "/tmp/producers-nats") .. "-port" .. N.offset
  return N.offset
end

--- Runs `server.sh ARGS...`; returns its output (stdout and stderr),
-- whether it exited 0, and its status.
function N.server(...)
  -- the sanitizer runtimes the ASan build preloads stay out of the
  -- servers, openssl and python (their leaks are not ours)
  local args = { "env -u LD_PRELOAD", q(N.server_sh) }
  if N.offset then
    table.insert(args, 2, ("PRODUCERS_NATS_DIR=%s PRODUCERS_NATS_PORT_OFFSET=%d")
      :format(q(N.dir), N.offset))
  end
  for _, a in ipairs({ ... }) do args[#args + 1] = q(tostring(a)) end
  return H.sh(table.concat(args, " "))
end

--- Starts `server.sh ARGS...` in the background; returns a function
-- that says whether it has finished (and how: true when it exited 0).
function N.server_async(...)
  local args = { "env -u LD_PRELOAD" }
  if N.offset then
    args[#args + 1] = ("PRODUCERS_NATS_DIR=%s PRODUCERS_NATS_PORT_OFFSET=%d"):format(q(N.dir), N.offset)
  end
  args[#args + 1] = q(N.server_sh)
  for _, a in ipairs({ ... }) do args[#args + 1] = q(tostring(a)) end
  local done = os.tmpname()
  os.remove(done)
  H.sh(("(%s; echo $? >%s) </dev/null >/dev/null 2>&1 &"):format(table.concat(args, " "), q(done)))
  return function()
    local status = H.read(done)
    if not status or not status:find("\n") then return nil end
    os.remove(done)
    return tonumber(status) == 0
  end
end

--- Like N.server, but raises with the output when the command fails.
function N.must_server(...)
  local out, ok, code = N.server(...)
  if not ok then
    error(("server.sh %s failed (status %s):\n%s"):format(table.concat({ ... }, " "), tostring(code), out), 2)
  end
  return out
end

--- server.sh start ARGS... (a fresh state dir, new TLS material); returns N.env().
function N.start(...)
  N.must_server("start", ...)
  return N.env()
end

--- server.sh stop (safe when nothing runs).
function N.stop() return N.must_server("stop") end

--- server.sh restart [NAME...]: the stores are kept.
function N.restart(...) return N.must_server("restart", ...) end

--- server.sh down NAME... / up NAME...
function N.down(...) return N.must_server("down", ...) end
function N.up(...) return N.must_server("up", ...) end

--- The tail of each server's log.
function N.logs(lines) return (N.server("logs", lines or 40)) end

--- The running servers' settings, from env.sh (KEY=value lines), read
-- anew on each call: start rewrites it.
function N.env()
  local path = N.dir .. "/env.sh"
  local f = io.open(path)
  if not f then
    error(("no NATS servers: %s is missing (N.start(), or scripts/nats/server.sh start)"):format(path), 2)
  end
  local env = {}
  for line in f:lines() do
    local k, v = line:match("^([A-Z_][A-Z0-9_]*)=(.*)$")
    if k then env[k] = v end
  end
  f:close()
  return env
end

--- server.sh status as { plain = pid or false, auth = ..., tls = ..., jwt = ... }.
function N.status()
  local out = N.server("status")
  local st = {}
  for _, name in ipairs({ "plain", "auth", "tls", "jwt" }) do
    st[name] = tonumber(out:match(name .. ": running, pid (%d+)")) or false
  end
  return st
end

--- True while process pid exists and is not a zombie (a stopped
-- server's new parent may reap it late).
function N.alive(pid)
  local stat = H.read("/proc/" .. pid .. "/stat")
  return stat ~= nil and stat:match("%) (%a)") ~= "Z"
end

--- The port of a URL (nats://host:PORT, tls://host:PORT).
function N.port(url) return tonumber(url:match(":(%d+)$")) end

--- True when something accepts TCP connections on 127.0.0.1:port.
function N.port_open(port)
  local _, ok = H.sh(("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d'"):format(port))
  return ok
end

--- The local addresses ("7F000001", "00000000", ...) listening on port
-- (from /proc/net/tcp; tcp6 as "tcp6:<hex>").
function N.listen_addresses(port)
  local found = {}
  for _, file in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
    for addr, p, state in (H.read(file) or ""):gmatch("%d+: (%x+):(%x%x%x%x) %x+:%x+ (%x%x)") do
      if state == "0A" and tonumber(p, 16) == port then
        found[#found + 1] = (file:find("6") and "tcp6:" or "") .. addr
      end
    end
  end
  return found
end

-- ------------------------------------------------------------ read.py

--- The connection for a server kind: "plain" (default), "auth" (user
-- and password, or the token), "tls" (tls://, the CA, the same
-- credentials), "jwt" (decentralized auth: the user of env.NATS_CREDS).
-- Returns the read.py arguments and an environment prefix. opts may
-- override: url, user, password, token, ca (false: none), no_auth (send
-- no credentials), nkey_seed (a seed file: the nkey user instead of
-- user and password), creds (a .creds file).
local function connection(kind, opts)
  local env, o = N.env(), opts or {}
  kind = kind or "plain"
  local url = o.url or ({ plain = env.NATS_URL, auth = env.NATS_AUTH_URL, tls = env.NATS_TLS_URL,
    jwt = env.NATS_JWT_URL })[kind]
  if not url then error("unknown server kind " .. tostring(kind), 3) end
  local args, vars = { "--server", url }, {}
  -- files, not secrets, on the command line
  local creds = o.creds or (kind == "jwt" and not o.no_auth and env.NATS_CREDS) or nil
  if creds then args[#args + 1] = "--creds"; args[#args + 1] = creds end
  if o.nkey_seed then args[#args + 1] = "--nkey-seed"; args[#args + 1] = o.nkey_seed end
  if kind ~= "plain" and kind ~= "jwt" and not o.no_auth and not o.nkey_seed then
    local user = o.user or (not o.token and env.NATS_USER) or nil
    local password = o.password or (not o.token and env.NATS_PASSWORD) or nil
    local token = o.token or (not o.user and env.NATS_TOKEN) or nil
    if user then vars[#vars + 1] = "NATS_USER=" .. q(user) end
    if password then vars[#vars + 1] = "NATS_PASSWORD=" .. q(password) end
    if token then vars[#vars + 1] = "NATS_TOKEN=" .. q(token) end
    args[#args + 1] = "--auth-env"
  end
  local ca = o.ca
  if ca == nil and kind == "tls" then ca = env.NATS_CA end
  if ca then args[#args + 1] = "--ca"; args[#args + 1] = ca end
  -- the variables read.py (and nats_smoke) read; an empty env -u list keeps the caller's out
  local prefix = "env -u LD_PRELOAD -u NATS_USER -u NATS_PASSWORD -u NATS_TOKEN " .. table.concat(vars, " ")
  return args, prefix
end
N.connection = connection

--- Runs read.py with args (a list) against a server kind (see
-- connection); returns its stdout, its stderr, whether it exited 0 and
-- its status (3: no connection, 4: no such stream).
function N.tool(args, kind, opts)
  local conn, prefix = connection(kind, opts)
  local all = {}
  for _, a in ipairs(conn) do all[#all + 1] = q(a) end
  for _, a in ipairs(args) do all[#all + 1] = q(tostring(a)) end
  local errfile = os.tmpname()
  local out, ok, code = H.sh(("%s %s %s %s 2>%s"):format(prefix, q(N.python), q(N.read_py),
    table.concat(all, " "), q(errfile)))
  local err = H.read(errfile) or ""
  os.remove(errfile)
  return out, err, ok, code
end

--- Like N.tool, but raises with read.py's error output when it fails.
local function must_tool(args, kind, opts)
  local out, err, ok, code = N.tool(args, kind, opts)
  if not ok then
    error(("read.py %s failed (status %s): %s%s"):format(table.concat(args, " "), tostring(code), err, out), 3)
  end
  return out
end

--- One JSON value a line, decoded.
local function json_lines(out)
  local list = {}
  for line in out:gmatch("[^\n]+") do list[#list + 1] = cjson.decode(line) end
  return list
end

--- Creates (or updates) a stream capturing subjects (a list). limits:
-- max_msgs, max_bytes, max_msg_size, discard ("new"/"old"),
-- duplicate_window (seconds), storage ("file"/"memory"). opts.kind
-- picks the server (default "plain").
function N.create_stream(name, subjects, limits, opts)
  local args = { "--stream", name }
  for _, s in ipairs(subjects) do args[#args + 1] = "--subjects"; args[#args + 1] = s end
  for k, v in pairs(limits or {}) do
    args[#args + 1] = "--" .. k:gsub("_", "-")
    args[#args + 1] = tostring(v)
  end
  return json_lines(must_tool(args, opts and opts.kind, opts))[1]
end

--- Deletes a stream.
function N.delete_stream(name, opts)
  return json_lines(must_tool({ "--stream", name, "--delete" }, opts and opts.kind, opts))[1]
end

--- The stream's config and state: messages, bytes, first_seq, last_seq,
-- max_msgs, discard, ...
function N.info(name, opts)
  return json_lines(must_tool({ "--stream", name, "--info" }, opts and opts.kind, opts))[1]
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function unbase64(s)
  s = s:gsub("[^%w%+/=]", "")
  local out = {}
  for i = 1, #s, 4 do
    local n, pad = 0, 0
    for j = i, i + 3 do
      local c = s:sub(j, j)
      local v = B64:find(c, 1, true)
      if c == "" or c == "=" or not v then pad = pad + 1; v = 1 end
      n = n * 64 + v - 1
    end
    local bytes = string.char(math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
    out[#out + 1] = bytes:sub(1, 3 - pad)
  end
  return table.concat(out)
end
N.unbase64 = unbase64

--- Every message of the stream, in sequence order: { stream, seq,
-- subject, headers (a table or nil), data (as read.py printed it),
-- encoding, value (the payload's bytes) }. opts: kind, filter, timeout.
function N.read(name, opts)
  local args = { "--stream", name, "--read" }
  if opts and opts.filter then args[#args + 1] = "--filter"; args[#args + 1] = opts.filter end
  if opts and opts.timeout then args[#args + 1] = "--timeout"; args[#args + 1] = tostring(opts.timeout) end
  local recs = json_lines(must_tool(args, opts and opts.kind, opts))
  for _, r in ipairs(recs) do
    if r.headers == cjson.null then r.headers = nil end
    r.value = r.encoding == "base64" and unbase64(r.data) or r.data
  end
  return recs
end

--- Publishes through JetStream with read.py: data (a string or a list),
-- opts: kind, count, msg_id ("{i}" replaced), headers (a table).
-- Returns the acks ({ stream, seq, duplicate }, ...), or nil, read.py's
-- error output and its status when it failed.
function N.publish(subject, data, opts)
  opts = opts or {}
  local args = { "--publish", subject }
  for _, d in ipairs(type(data) == "table" and data or { data }) do args[#args + 1] = "--data"; args[#args + 1] = d end
  if opts.count then args[#args + 1] = "--count"; args[#args + 1] = tostring(opts.count) end
  if opts.msg_id then args[#args + 1] = "--msg-id"; args[#args + 1] = opts.msg_id end
  local names = {}
  for k in pairs(opts.headers or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do args[#args + 1] = "--header"; args[#args + 1] = k .. "=" .. opts.headers[k] end
  local out, err, ok, code = N.tool(args, opts.kind, opts)
  if not ok then return nil, err, code end
  return json_lines(out)
end

--- Connects and reads the server's INFO: { server_name, version,
-- jetstream, tls }, or nil, read.py's error output and its status.
function N.ping(kind, opts)
  local out, err, ok, code = N.tool({ "--ping" }, kind, opts)
  if not ok then return nil, err, code end
  return json_lines(out)[1]
end

-- ------------------------------------------------------------ names

local serial = 0
--- A stream name no other case used (letters, digits, '_' and '-' only).
function N.stream(prefix)
  serial = serial + 1
  return ("%s_%d_%04x_%d"):format(prefix or "S", os.time(), math.random(0, 0xffff), serial)
end

-- ------------------------------------------------------------ tests

--- fn wrapped so that a failure prints the servers' logs first:
-- it("...", N.with_logs(function() ... end)). (busted's it stays in the
-- spec file, so busted names the spec's line, not this file's.)
function N.with_logs(fn)
  return function()
    local ok, err = xpcall(fn, function(e) return e end)
    if not ok then
      io.stdout:write(("\n==== NATS test failed\n%s\n==== server logs\n%s\n")
        :format(tostring(type(err) == "table" and (err.message or err[1]) or err), N.logs(40)))
      io.stdout:flush()
      error(err, 0)
    end
  end
end

return N
