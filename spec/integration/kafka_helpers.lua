-- Helpers for the integration specs, which run against a real Apache Kafka
-- broker started by scripts/kafka/broker.sh (see scripts/integration.sh):
-- the broker's env.sh, kcat read-back with the security options of each
-- listener, waiting for conditions with a deadline (never a fixed sleep),
-- running broker.sh, and printing the broker's logs when a test fails.
--
--   local K = require("integration.kafka_helpers")
--   local env = K.env()                       -- KAFKA_BOOTSTRAP, KAFKA_CA, ...
--   K.create_topic(topic, 3)
--   K.it("does something", function() ... end)   -- prints broker logs on failure
local system = require("system")    -- lua-system, a dependency of busted
local busted = require("busted")    -- its API (it, describe, pending) for the wrappers below
local H = require("helpers")

local K = {}

local ROOT_BROKER_SH = "scripts/kafka/broker.sh"

-- ------------------------------------------------------------ time

--- Seconds on a monotonic clock (sub-millisecond resolution).
K.now = system.monotime

--- Sleeps s seconds: only as the step of a loop that checks a condition
-- against a deadline (K.wait_for), never as a fixed wait.
function K.sleep(s) system.sleep(s) end

--- Calls cond() until it returns a truthy value or timeout seconds pass.
-- Between tries: step(), if given: a function, or a producer (or a list
-- of producers) to poll for up to 50 ms; else a 50 ms sleep.
-- Returns cond()'s value (or false) and the seconds waited.
function K.wait_for(cond, timeout, step)
  local t0 = K.now()
  local deadline = t0 + (timeout or 10)
  while true do
    local v = cond()
    if v then return v, K.now() - t0 end
    if K.now() >= deadline then return false, K.now() - t0 end
    if type(step) == "function" then
      step()
    elseif type(step) == "table" and step[1] then
      for _, p in ipairs(step) do p:poll(0.05 / #step) end
    elseif step ~= nil then
      step:poll(0.05)
    else
      K.sleep(0.05)
    end
  end
end

-- ------------------------------------------------------------ shell

local q = H.shell_quote
K.q = q

--- Runs a shell command; returns its output (stdout and stderr), whether
-- it exited with status 0, and the status. (The status is echoed by the
-- shell, since io.popen's close does not return it on Lua 5.1/LuaJIT.)
function K.sh(cmd)
  local f = assert(io.popen("{ " .. cmd .. "\n} 2>&1; echo \"__status=$?\""))
  local out = f:read("*a")
  f:close()
  local body, code = out:match("^(.*)__status=(%d+)\n?$")
  code = tonumber(code) or -1
  return body or out, code == 0, code
end

-- ------------------------------------------------------------ env.sh

K.dir = os.getenv("PRODUCERS_KAFKA_DIR") or "/tmp/producers-kafka"

--- The running broker's settings, read from env.sh (KEY=value lines).
-- Read anew on every call: broker.sh start rewrites it (new CA).
function K.env()
  local path = K.dir .. "/env.sh"
  local f = io.open(path)
  if not f then
    error(("no Kafka broker: %s is missing (run scripts/kafka/broker.sh start, "
      .. "or scripts/integration.sh)"):format(path), 2)
  end
  local env = {}
  for line in f:lines() do
    local k, v = line:match("^([A-Z_][A-Z0-9_]*)=(.*)$")
    if k then env[k] = v end
  end
  f:close()
  env.KAFKA_NODES = tonumber(env.KAFKA_NODES)
  return env
end

--- K.env(), after checking that the broker listens on the first PLAINTEXT
-- port (fails fast when env.sh is stale).
function K.broker_env()
  local env = K.env()
  local port = tonumber((env.KAFKA_BOOTSTRAP or ""):match("^[^,]*:(%d+)"))
  if not (port and K.port_open(port)) then
    error(("no Kafka broker listens on %s (env.sh is stale? run scripts/kafka/broker.sh start, "
      .. "or scripts/integration.sh)"):format(tostring(env.KAFKA_BOOTSTRAP)), 2)
  end
  return env
end

--- broker.sh, as env.sh names it (or the one in this tree).
function K.broker_sh()
  local f = io.open(K.dir .. "/env.sh")
  if f then
    f:close()
    local p = K.env().KAFKA_BROKER_SH
    if p and p ~= "" then return p end
  end
  return ROOT_BROKER_SH
end

--- Runs `broker.sh ARGS...`; returns its output and whether it succeeded.
function K.broker(...)
  local args = { q(K.broker_sh()) }
  for _, a in ipairs({ ... }) do args[#args + 1] = q(tostring(a)) end
  return K.sh(table.concat(args, " "))
end

--- Like K.broker, but raises with the output when the command fails.
function K.must_broker(...)
  local out, ok = K.broker(...)
  if not ok then
    error(("broker.sh %s failed:\n%s"):format(table.concat({ ... }, " "), out), 2)
  end
  return out
end

--- The tail of every node's log (`broker.sh logs LINES`).
function K.broker_logs(lines)
  local out = K.broker("logs", lines or 60)
  return out
end

--- True when node i (default: every node) of the cluster runs.
function K.running(i)
  local out, ok = K.broker("status")
  if not ok then return false end
  if i then return out:find("node " .. i .. ": running", 1, true) ~= nil end
  return out:find("running", 1, true) ~= nil and not out:find("stopped", 1, true)
end

--- True when something accepts TCP connections on 127.0.0.1:port.
function K.port_open(port)
  local _, ok = K.sh(("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d'"):format(port))
  return ok
end

--- Creates a topic and waits until each partition has a leader.
function K.create_topic(name, partitions, rf)
  return K.must_broker("create-topic", name, partitions or 1, rf)
end

--- The node id leading topic's partition.
function K.leader(topic, partition)
  local out = K.must_broker("leader", topic, partition)
  return assert(tonumber(out:match("(%d+)%s*$")), "broker.sh leader printed: " .. out)
end

-- ------------------------------------------------------------ names

local serial = 0
--- A topic name no other run used (start wipes data, but specs share a
-- broker): prefix-<time>-<random>-<n>.
function K.topic(prefix)
  serial = serial + 1
  return ("%s-%d-%04x-%d"):format(prefix or "it", os.time(), math.random(0, 0xffff), serial)
end
math.randomseed(os.time(), math.floor(system.gettime() * 1e6) % 2147483647)

-- ------------------------------------------------------------ clients

--- librdkafka properties (as a table) for a listener: "plaintext",
-- "plain" (SASL_SSL, PLAIN, alice) or "scram" (SASL_SSL, SCRAM-SHA-512, bob).
function K.client_config(kind, env)
  env = env or K.env()
  if kind == nil or kind == "plaintext" then
    return { ["bootstrap.servers"] = env.KAFKA_BOOTSTRAP, ["broker.address.family"] = "v4" }
  end
  local mech, user, pass
  if kind == "plain" then
    mech, user, pass = "PLAIN", env.KAFKA_PLAIN_USER, env.KAFKA_PLAIN_PASSWORD
  elseif kind == "scram" then
    mech, user, pass = env.KAFKA_SCRAM_MECHANISM, env.KAFKA_SCRAM_USER, env.KAFKA_SCRAM_PASSWORD
  else
    error("client_config: unknown listener kind " .. tostring(kind), 2)
  end
  return {
    ["bootstrap.servers"] = env.KAFKA_SASL_BOOTSTRAP, ["broker.address.family"] = "v4",
    ["security.protocol"] = "SASL_SSL", ["sasl.mechanisms"] = mech,
    ["sasl.username"] = user, ["sasl.password"] = pass, ["ssl.ca.location"] = env.KAFKA_CA,
  }
end

--- The kcat arguments (-b and -X ...) for a listener kind.
function K.kcat_args(kind, env)
  local conf = K.client_config(kind, env)
  local args = { "-b " .. q(conf["bootstrap.servers"]) }
  local names = {}
  for k in pairs(conf) do if k ~= "bootstrap.servers" then names[#names + 1] = k end end
  table.sort(names)
  for _, k in ipairs(names) do args[#args + 1] = "-X " .. q(k .. "=" .. conf[k]) end
  return table.concat(args, " ")
end

--- Reads every message of topic with kcat (an independent client) over
-- the listener kind ("plaintext", "plain", "scram"): H.kcat_read_args,
-- bounded by timeout seconds (default 60).
function K.kcat_read(topic, kind, timeout)
  return H.kcat_read_args(K.kcat_args(kind), topic, timeout)
end

--- Records indexed by "partition:offset".
function K.by_position(records)
  local t = {}
  for _, r in ipairs(records) do t[r.partition .. ":" .. r.offset] = r end
  return t
end

--- Asserts every delivery report's key and value were read back at the
-- report's partition and offset; returns K.by_position(records).
function K.assert_read_back(reports, records)
  local at = K.by_position(records)
  for _, r in ipairs(reports) do
    local rec = at[r.partition .. ":" .. r.offset]
    assert(type(rec) == "table", ("nothing read back at %d:%d"):format(r.partition, r.offset))
    assert(r.key == rec.key, ("key at %d:%d differs"):format(r.partition, r.offset))
    assert(r.value == rec.value, ("value at %d:%d differs"):format(r.partition, r.offset))
  end
  return at
end

-- ------------------------------------------------------------ logs

--- A logger that records every line (H.recorder) plus helpers:
-- log.fn(level, message); log.find(pattern[, level]); log.text();
-- log.containing(plain) -> lines containing a plain substring.
function K.recorder()
  local log = H.recorder()
  function log.containing(s)
    local out = {}
    for _, l in ipairs(log.lines) do
      if l[2]:find(s, 1, true) then out[#out + 1] = l[1] .. " " .. l[2] end
    end
    return out
  end
  --- The last n lines (all when n is nil), for failure messages.
  function log.tail(n)
    local from = n and math.max(1, #log.lines - n + 1) or 1
    local out = {}
    for i = from, #log.lines do out[#out + 1] = log.lines[i][1] .. " " .. log.lines[i][2] end
    return table.concat(out, "\n")
  end
  return log
end

-- ------------------------------------------------------------ tests

local function print_failure_context(name, err)
  io.stdout:write(("\n==== integration test failed: %s\n%s\n==== broker logs\n%s\n")
    :format(name, tostring(type(err) == "table" and (err.message or err[1]) or err), K.broker_logs(60)))
  io.stdout:flush()
end

--- Like busted's it, but prints the broker's logs when the test fails.
function K.it(name, fn)
  busted.it(name, function()
    local ok, err = xpcall(fn, function(e) return e end)
    if not ok then
      print_failure_context(name, err)
      error(err, 0)
    end
  end)
end

--- A describe for a cluster of `nodes` brokers: the block when the
-- running cluster has that many nodes, else one pending test that says so.
function K.describe_cluster(name, nodes, fn)
  local ok, env = pcall(K.env)
  if ok and env.KAFKA_NODES ~= nodes then
    busted.describe(name, function()
      busted.pending(("needs a %d-node cluster, the running one has %s (scripts/integration.sh starts it)")
        :format(nodes, tostring(env.KAFKA_NODES)))
    end)
  else
    busted.describe(name, fn)   -- without env.sh, K.env() raises a clear error in setup
  end
end

--- Every report of a list in a field-by-field string, for failure messages.
function K.describe_reports(reports, n)
  local out = {}
  for i = 1, math.min(#reports, n or 10) do
    local r = reports[i]
    out[#out + 1] = ("%s [%s] @%s err=%s (%s)"):format(r.topic, tostring(r.partition),
      tostring(r.offset), tostring(r.err), tostring(r.error))
  end
  return table.concat(out, "\n")
end

return K
