--- HTTP requests into Kafka messages with producers.ngx (see README.md).
--
--   init_by_lua_block        { assert(require("producers.ngx").check(require("events").options())) }
--   init_worker_by_lua_block { require("producers.ngx").init(require("events").options()) }
--   exit_worker_by_lua_block { require("producers.ngx").exit() }
--   location = /events  { content_by_lua_block { require("events").handle() } }
--   location = /metrics { content_by_lua_block { require("events").metrics() } }
local kafka = require("producers.ngx")
local cjson = require("cjson.safe").new()

local M = {}

-- Delivery failures, in the timer's light thread (cosockets and ngx.sleep
-- work here); successes at debug level.
local function on_delivery(err, r)
  local request_id = r.headers and r.headers.request_id or "-"
  if err then
    ngx.log(ngx.ERR, "events: delivery failed: request ", request_id, " to ", r.topic,
            " [", r.partition, "]: ", err, " (", r.err_name, ")")
  else
    ngx.log(ngx.DEBUG, "events: delivered request ", request_id, " to ", r.topic,
            " [", r.partition, "] at offset ", r.offset)
  end
end

--- The producer's options: one place for init_by_lua's check and
-- init_worker_by_lua's init. extra: more options over these (tests).
function M.options(extra)
  local opts = {
    bootstrap_servers = os.getenv("KAFKA_BOOTSTRAP_SERVERS"),   -- needs "env KAFKA_BOOTSTRAP_SERVERS;"
    shared_dict = "producers",    -- lua_shared_dict producers 1m;  counters for /metrics
    close_timeout = 5,            -- s a leaving worker waits for deliveries
    on_delivery = on_delivery,
    config = { ["linger.ms"] = 5 },
  }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return opts
end

local function respond(status, body, headers)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  for name, value in pairs(headers or {}) do ngx.header[name] = value end
  ngx.say(cjson.encode(body))
  return ngx.exit(ngx.HTTP_OK)
end

--- POST /events?topic=T[&key=K][&wait=1] -> one JSON message
-- {method, uri, args, body, request_id, time} on T with key K. 202 when
-- queued; with wait=1, 200 and the offset once the broker has it.
function M.handle()
  local request_id = ngx.var.request_id
  ngx.header["X-Request-Id"] = request_id
  if ngx.req.get_method() ~= "POST" then
    return respond(405, { error = "use POST" }, { Allow = "POST" })
  end
  local args = ngx.req.get_uri_args()
  local topic, key = args.topic, args.key
  if type(topic) ~= "string" or topic == "" then
    return respond(400, { error = "missing ?topic=" })
  end
  if key ~= nil and type(key) ~= "string" then
    return respond(400, { error = "?key= must be given once, with a value" })
  end
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body and ngx.req.get_body_file() then
    return respond(413, { error = "body too large for the in-memory buffer" })
  end
  local message = {
    method = "POST", uri = ngx.var.uri, args = args, body = body or "",
    request_id = request_id, time = ngx.now(),
  }
  local opts = { headers = { request_id = request_id } }

  if args.wait then   -- wait for the broker, without blocking the worker
    opts.timeout = 10
    local r, err, code = kafka.send(topic, key, message, opts)   -- r nil: err the message, code its name
    if not r then
      return respond(502, { error = err, code = code, request_id = request_id })
    end
    return respond(200, { partition = r.partition, offset = r.offset, request_id = request_id })
  end

  local ok, err, code = kafka.produce(topic, key, message, opts)
  if not ok then
    ngx.log(ngx.ERR, "events: produce for request ", request_id, " to ", topic, ": ", err, " (", code, ")")
    if code == "_QUEUE_FULL" then
      return respond(503, { error = err, code = code, request_id = request_id }, { ["Retry-After"] = "1" })
    end
    return respond(code == "_STATE" and 503 or 502, { error = err, code = code, request_id = request_id })
  end
  return respond(202, { queued = true, request_id = request_id })
end

--- GET /metrics: every worker's counters (delivered, failed, purged, queued).
function M.metrics()
  local c, err = kafka.metrics()
  if not c then return respond(500, { error = err }) end
  return respond(200, c)
end

return M
