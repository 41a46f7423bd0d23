--- An experiment, not part of the library: a librdkafka producer driven
-- from LuaJIT's FFI, to see what calling rd_kafka_produce without a
-- classic C function (lua_CFunction) in between would save per message.
--
-- Same librdkafka instance as producers.core (ffi.load of the soname the
-- module links returns the library already loaded) and the same
-- properties (producers.kafka.config: the library's defaults, then config). Values are
-- strings only (no JSON encoder here); delivery reports arrive as DR
-- events on the main queue and are counted, per message, by a loop in
-- Lua (no report table, no callback).
local ffi = require("ffi")
local Kafka = require("producers.kafka")

ffi.cdef [[
typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_conf_s rd_kafka_conf_t;
typedef struct rd_kafka_topic_s rd_kafka_topic_t;
typedef struct rd_kafka_queue_s rd_kafka_queue_t;
typedef struct rd_kafka_op_s rd_kafka_event_t;
typedef struct rd_kafka_message_s {
  int err;
  rd_kafka_topic_t *rkt;
  int32_t partition;
  void *payload;
  size_t len;
  void *key;
  size_t key_len;
  int64_t offset;
  void *_private;
} rd_kafka_message_t;

rd_kafka_conf_t *rd_kafka_conf_new(void);
int rd_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value,
                      char *errstr, size_t errstr_size);
void rd_kafka_conf_set_events(rd_kafka_conf_t *conf, int events);
void rd_kafka_conf_destroy(rd_kafka_conf_t *conf);
rd_kafka_t *rd_kafka_new(int type, rd_kafka_conf_t *conf, char *errstr, size_t errstr_size);
void rd_kafka_destroy(rd_kafka_t *rk);
int rd_kafka_flush(rd_kafka_t *rk, int timeout_ms);
rd_kafka_topic_t *rd_kafka_topic_new(rd_kafka_t *rk, const char *topic, void *conf);
void rd_kafka_topic_destroy(rd_kafka_topic_t *rkt);
int rd_kafka_produce(rd_kafka_topic_t *rkt, int32_t partition, int msgflags,
                     const void *payload, size_t len, const void *key, size_t keylen,
                     void *msg_opaque);
int rd_kafka_last_error(void);
const char *rd_kafka_err2name(int err);
rd_kafka_queue_t *rd_kafka_queue_get_main(rd_kafka_t *rk);
void rd_kafka_queue_destroy(rd_kafka_queue_t *rkqu);
rd_kafka_event_t *rd_kafka_queue_poll(rd_kafka_queue_t *rkqu, int timeout_ms);
int rd_kafka_event_type(const rd_kafka_event_t *rkev);
const rd_kafka_message_t *rd_kafka_event_message_next(rd_kafka_event_t *rkev);
void rd_kafka_event_destroy(rd_kafka_event_t *rkev);
]]

local rdk = ffi.load("librdkafka.so.1")

local RD_KAFKA_PRODUCER = 0
local RD_KAFKA_EVENT_DR = 1
local RD_KAFKA_PARTITION_UA = -1
local RD_KAFKA_MSG_F_COPY = 2
local ERR_QUEUE_FULL = -184

local F = {}
F.__index = F

function F.new(bootstrap, topic, config)
  local errstr = ffi.new("char[512]")
  local conf = rdk.rd_kafka_conf_new()
  for name, value in pairs(Kafka.config({ bootstrap_servers = bootstrap, config = config })) do
    if rdk.rd_kafka_conf_set(conf, name, tostring(value), errstr, 512) ~= 0 then
      rdk.rd_kafka_conf_destroy(conf)
      error("ffi_producer: " .. name .. ": " .. ffi.string(errstr))
    end
  end
  rdk.rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_DR)
  local rk = rdk.rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, 512)
  if rk == nil then
    rdk.rd_kafka_conf_destroy(conf)
    error("ffi_producer: " .. ffi.string(errstr))
  end
  return setmetatable({
    rk = rk,
    rkt = rdk.rd_kafka_topic_new(rk, topic, nil),
    queue = rdk.rd_kafka_queue_get_main(rk),
    outstanding = 0,
  }, F)
end

--- true, or false and librdkafka's error name ("_QUEUE_FULL", ...).
function F:produce(key, value)
  if rdk.rd_kafka_produce(self.rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
                          value, #value, key, #key, nil) == 0 then
    self.outstanding = self.outstanding + 1
    return true
  end
  local err = rdk.rd_kafka_last_error()
  if err == ERR_QUEUE_FULL then return false, "_QUEUE_FULL" end
  return false, ffi.string(rdk.rd_kafka_err2name(err))
end

--- Serves the reports ready now: delivered, failed.
function F:poll()
  local ok, bad = 0, 0
  while true do
    local ev = rdk.rd_kafka_queue_poll(self.queue, 0)
    if ev == nil then break end
    if rdk.rd_kafka_event_type(ev) == RD_KAFKA_EVENT_DR then
      while true do
        local m = rdk.rd_kafka_event_message_next(ev)
        if m == nil then break end
        if m.err == 0 then ok = ok + 1 else bad = bad + 1 end
      end
    end
    rdk.rd_kafka_event_destroy(ev)
  end
  self.outstanding = self.outstanding - ok - bad
  return ok, bad
end

function F:queue_length() return self.outstanding end

function F:close(timeout_s)
  if not self.rk then return end
  rdk.rd_kafka_flush(self.rk, timeout_s * 1000)
  self:poll()
  rdk.rd_kafka_queue_destroy(self.queue)
  rdk.rd_kafka_topic_destroy(self.rkt)
  rdk.rd_kafka_destroy(self.rk)
  self.rk = nil
end

return F
