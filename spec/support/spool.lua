-- What the spool's specs share (spec/spool/): spool directories, a
-- producer on the mock cluster with its log recorded (brokers go down
-- there), and the values kcat reads back.
local H = require("helpers")

local S = {}

--- A path for a spool directory, not made yet.
function S.tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  return dir
end

--- Removes the directories given.
function S.rm(...)
  for _, dir in ipairs({ ... }) do os.execute("rm -rf " .. H.shell_quote(dir)) end
end

--- A producer on mock cluster m, its log recorded unless opts.logger is
-- given, spooled in dir when dir is given (and opts.spool is not).
function S.producer(m, dir, opts)
  opts = opts or {}
  if dir and not opts.spool then opts.spool = { dir = dir } end
  opts.logger = opts.logger or H.recorder().fn
  return H.producer(m, opts)
end

--- The values of topic on bootstrap, read back with kcat in order (by
-- partition, then offset), and how many times each was read.
function S.values(bootstrap, topic)
  local list, count = {}, {}
  for _, r in ipairs(H.kcat_read(bootstrap, topic)) do
    list[#list + 1] = r.value
    count[r.value] = (count[r.value] or 0) + 1
  end
  return list, count
end

return S
