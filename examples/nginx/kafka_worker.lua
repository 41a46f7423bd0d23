--- One Kafka producer per nginx worker (OpenResty / Debian's nginx lua module).
--
--   init_worker_by_lua_block { require("kafka_worker").init_worker{ poll_interval = 0.05, close_timeout = 5 } }
--   exit_worker_by_lua_block { require("kafka_worker").exit_worker() }
--   location = /events { content_by_lua_block { require("kafka_worker").handle() } }
--
-- Nothing here blocks the event loop while the worker serves requests:
-- produce only queues (and serves reports already waiting, without
-- waiting), and a timer serves the other delivery reports with poll(0).
-- Only exit_worker waits, up to close_timeout seconds, when the worker is
-- leaving anyway (nginx -s quit / reload / stop) and serves no requests.
local producers = require("producers")
local cjson = require("cjson").new()

local M = {}

local producer            -- this worker's producer, nil when it could not start
local settings = { poll_interval = 0.05, close_timeout = 5 }

local LEVELS = { debug = ngx.DEBUG, info = ngx.INFO, warn = ngx.WARN, error = ngx.ERR }

-- The library's own messages (librdkafka's logs, "n messages lost" at
-- close) go to nginx's error log.
local function logger(level, message)
  ngx.log(LEVELS[level] or ngx.ERR, "producers: ", message)
end

-- Every report: successes at debug level (ngx.log drops them before
-- building the line unless error_log says debug), failures at error.
local function on_delivery(err, r)
  local request_id = r.headers and r.headers.request_id or "-"
  if err then
    ngx.log(ngx.ERR, "kafka: delivery failed: request ", request_id, " to ", r.topic,
            " [", r.partition, "]: ", err, " (", r.error, ")")
  else
    ngx.log(ngx.DEBUG, "kafka: delivered request ", request_id, " to ", r.topic,
            " [", r.partition, "] at offset ", r.offset, " in ", r.latency, " s")
  end
end

-- The timer: serves the reports that arrived since, never waits.
local function poll(premature)
  if premature or not producer or producer:is_closed() then return end
  local ok, err = pcall(producer.poll, producer, 0)
  if not ok then ngx.log(ngx.ERR, "kafka: poll: ", err) end
end

--- In init_worker_by_lua*: creates this worker's producer and the timer.
-- opts: poll_interval (s, default 0.05), close_timeout (s, default 5),
-- config (librdkafka properties over the library's defaults).
function M.init_worker(opts)
  opts = opts or {}
  settings.poll_interval = opts.poll_interval or settings.poll_interval
  settings.close_timeout = opts.close_timeout or settings.close_timeout

  local servers = os.getenv("KAFKA_BOOTSTRAP_SERVERS")   -- needs "env KAFKA_BOOTSTRAP_SERVERS;"
  if not servers or servers == "" then
    ngx.log(ngx.ERR, "kafka: KAFKA_BOOTSTRAP_SERVERS is not set; /events answers 503")
    return
  end
  local ok, p = pcall(producers.kafka.new, {
    bootstrap_servers = servers,
    config = opts.config,
    logger = logger,
    on_delivery = on_delivery,
  })
  if not ok then
    ngx.log(ngx.ERR, "kafka: cannot create the producer: ", p)
    return
  end
  producer = p

  local started, err = ngx.timer.every(settings.poll_interval, poll)
  if not started then
    ngx.log(ngx.ERR, "kafka: cannot start the delivery report timer: ", err)
  end
  ngx.log(ngx.INFO, "kafka: producer ready in worker ", ngx.worker.pid(), " (", servers, ")")
end

--- In exit_worker_by_lua*: flushes for at most close_timeout seconds,
-- then frees the producer (what is left is purged; its reports fail and
-- the library logs how many were lost).
function M.exit_worker()
  if not producer then return end
  local p = producer
  producer = nil
  local waiting = p:queue_length()
  local started = ngx.now()
  local ok, err = pcall(p.close, p, settings.close_timeout)
  if not ok then ngx.log(ngx.ERR, "kafka: close: ", err) end
  ngx.update_time()
  ngx.log(ngx.INFO, "kafka: producer closed in worker ", ngx.worker.pid(), " (", waiting,
          " reports were waiting, took ", ("%.3f"):format(ngx.now() - started), " s)")
end

local function respond(status, body, headers)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  for name, value in pairs(headers or {}) do ngx.header[name] = value end
  ngx.say(cjson.encode(body))
  return ngx.exit(ngx.HTTP_OK)   -- the status is set; this ends the request
end

--- In content_by_lua*: POST /events?topic=T[&key=K] -> one message
-- { method, uri, args, body, request_id, time } to topic T with key K.
-- 202 when queued; 400 bad request; 405 not POST; 503 queue full or no
-- producer (retry later); 502 another failure to queue.
function M.handle()
  local request_id = ngx.var.request_id
  ngx.header["X-Request-Id"] = request_id
  local method = ngx.req.get_method()
  if method ~= "POST" then
    return respond(405, { error = "use POST" }, { Allow = "POST" })
  end
  if not producer then
    return respond(503, { error = "producer unavailable" }, { ["Retry-After"] = "5" })
  end
  local args, err = ngx.req.get_uri_args()
  if err then ngx.log(ngx.WARN, "kafka: request ", request_id, ": ", err) end
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
    -- client_body_buffer_size equals client_max_body_size in nginx.conf, so
    -- this only happens with a different config
    return respond(413, { error = "body too large for the in-memory buffer" })
  end

  local message = {
    method = method,
    uri = ngx.var.uri,
    args = args,
    body = body or "",
    request_id = request_id,
    time = ngx.now(),
  }
  -- Our callbacks never raise, so produce raising means it queued nothing
  -- (misuse, or a value JSON cannot carry).
  local ok, queued, msg, code = pcall(producer.produce, producer, topic, key, message,
                                      { headers = { request_id = request_id } })
  if not ok then
    ngx.log(ngx.ERR, "kafka: produce for request ", request_id, " raised: ", queued)
    return respond(500, { error = "cannot produce", request_id = request_id })
  end
  if not queued then
    ngx.log(ngx.ERR, "kafka: produce for request ", request_id, " to ", topic, ": ", msg, " (", code, ")")
    if code == "_QUEUE_FULL" then
      return respond(503, { error = msg, code = code, request_id = request_id }, { ["Retry-After"] = "1" })
    end
    return respond(502, { error = msg, code = code, request_id = request_id })
  end
  return respond(202, { queued = true, request_id = request_id })
end

return M
