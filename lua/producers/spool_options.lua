--- The durable spool's options (`spool = { ... }`, docs/spool.md),
-- checked the same way for every backend that takes them
-- (producers.kafka, producers.nats): a misused field raises, naming it,
-- before anything is opened. The C core (src/core/spooling.c) reads the
-- table as checked here.
-- @module producers.spool_options

local M = {}

-- Their types; the numbers' ranges (integers).
local TYPES = {
  dir = "string", max_bytes = "number", segment_bytes = "number",
  fsync = "string", fsync_interval_ms = "number", id_header = "boolean",
}
local RANGES = {
  max_bytes = { 4096, 2^53 }, segment_bytes = { 4096, 2^30 }, fsync_interval_ms = { 1, 2^31 - 1 },
}
local FSYNC = { never = true, interval = true, always = true }

--- Checks spool (nil: no spool; else a table: the caller's option check
-- saw to it). Raises "<who>: option 'spool.<field>' ..." at level as
-- error's counted from the function calling check (2: its caller's
-- line, as the other option errors).
-- @tparam table|nil spool
-- @string who the function named in the message ("producers.kafka.new")
-- @int level
function M.check(spool, who, level)
  if spool == nil then return end
  local function bad(fmt, ...)
    error(who .. ": option " .. fmt:format(...), level + 2)     -- past bad and check
  end
  for name, value in pairs(spool) do
    local want = TYPES[name]
    if not want then
      bad("'spool.%s' is unknown (dir, max_bytes, segment_bytes, fsync, fsync_interval_ms, id_header)", tostring(name))
    end
    if type(value) ~= want then bad("'spool.%s' must be a %s, got %s", name, want, type(value)) end
    local range = RANGES[name]
    if range and not (value >= range[1] and value <= range[2] and value % 1 == 0) then
      bad("'spool.%s' must be an integer from %d to %d, got %s", name, range[1], range[2], tostring(value))
    end
  end
  if spool.dir == nil or spool.dir == "" then bad("'spool.dir' is required (a directory path)") end
  if spool.fsync ~= nil and not FSYNC[spool.fsync] then
    bad("'spool.fsync' must be 'never', 'interval' or 'always', got '%s'", spool.fsync)
  end
end

return M
