-- Random inputs for spec/core/random_spec.lua: a seeded generator that
-- gives the same numbers on every Lua (so a seed replays under 5.4 and
-- LuaJIT alike), and the messages it makes: values, keys, headers,
-- options, each with what its report must show.
local cjson = require("cjson").new()
-- a buffer of its own per call: on LuaJIT and 5.1 a finalizer that
-- encodes inside lua_pushlstring would overwrite a shared one while it is
-- copied (the library's defect spec/core/collector_spec.lua keeps; this is the test's copy)
cjson.encode_keep_buffer(false)

local M = {}

--- Park and Miller's minimal standard generator (multiplier 48271,
-- modulus 2^31 - 1): exact in doubles and in 64-bit integers.
local Rng = {}
Rng.__index = Rng
local MODULUS = 2147483647

function Rng.new(seed)
  return setmetatable({ state = math.floor(seed) % (MODULUS - 1) + 1 }, Rng)
end

function Rng:next()
  self.state = self.state * 48271 % MODULUS
  return self.state
end

--- An integer in [lo, hi].
function Rng:int(lo, hi)
  return lo + self:next() % (hi - lo + 1)
end

--- True with probability p.
function Rng:chance(p)
  return self:next() < p * MODULUS
end

function Rng:pick(list)
  return list[self:int(1, #list)]
end

--- One of the keys of weights (name -> weight), in proportion; names are
-- visited sorted so that the choice depends on the seed alone.
function Rng:weighted(weights)
  local names, total = {}, 0
  for name, w in pairs(weights) do
    names[#names + 1] = name
    total = total + w
  end
  table.sort(names)
  local x = self:int(1, total)
  for _, name in ipairs(names) do
    x = x - weights[name]
    if x <= 0 then return name end
  end
end

--- n random bytes, NULs and high bytes included.
function Rng:bytes(n)
  local out = {}
  for i = 1, n do out[i] = string.char(self:int(0, 255)) end
  return table.concat(out)
end

--- A new generator seeded from this one (another stream, so that one
-- stream's consumption does not shift the other's).
function Rng:fork()
  return Rng.new(self:next())
end

M.Rng = Rng

--- lua-cjson's JSON of a table, with its default settings.
M.encode = cjson.encode

--- What a report's value is compared by: the bytes themselves when
-- short, else the length and both ends (the long values carry their
-- message's id at both ends).
function M.fingerprint(s)
  if s == nil then return "<nil>" end
  if #s <= 256 then return s end
  return ("%d:%s...%s"):format(#s, s:sub(1, 48), s:sub(-48))
end

local WORDS = { "a", "id", "event", "user", "ok", "tags", "ts", "n", "x y", "é", "quote\"", "nl\n" }

local function random_scalar(rng)
  local kind = rng:int(1, 6)
  if kind == 1 then return rng:int(-1000000, 1000000) end
  if kind == 2 then return rng:int(-100000, 100000) / 64 end
  if kind == 3 then return rng:chance(0.5) end
  if kind == 4 then return cjson.null end
  if kind == 5 then return rng:pick(WORDS) end
  return rng:bytes(rng:int(0, 24))
end

-- A table lua-cjson can encode: an array or an object, nested up to depth.
local function random_table(rng, depth)
  local t, n = {}, rng:int(0, 6)
  local array = rng:chance(0.4)
  for i = 1, n do
    local v = (depth > 0 and rng:chance(0.3)) and random_table(rng, depth - 1) or random_scalar(rng)
    if array then t[i] = v else t[rng:pick(WORDS) .. rng:int(1, 9)] = v end
  end
  return t
end

--- A string of about n bytes that starts and ends with the message id.
local function large_string(rng, id, n)
  local tag = ("<%d>"):format(id)
  local chunk = rng:bytes(rng:int(1, 64))
  local body = string.rep(chunk, math.ceil(n / #chunk))
  return tag .. body:sub(1, math.max(0, n - 2 * #tag)) .. tag
end

--- A value and its expected bytes: nil (a tombstone), short or large
-- strings (from 1 KiB they are lent to librdkafka), nested tables (the
-- JSON lua-cjson writes for them), a table whose JSON is large.
function M.value(rng, id)
  local kind = rng:weighted{ tombstone = 8, short = 30, large = 15, boundary = 3, table = 35, big_table = 5 }
  local v
  if kind == "tombstone" then return nil, nil end
  if kind == "short" then v = rng:bytes(rng:int(0, 80))
  elseif kind == "large" then v = large_string(rng, id, rng:int(1024, 16384))
  elseif kind == "boundary" then v = large_string(rng, id, rng:int(1022, 1025))
  else
    v = random_table(rng, kind == "big_table" and 1 or 3)
    if kind == "big_table" then
      v.id, v.blob = id, large_string(rng, id, rng:int(1024, 4096))
    end
    return v, cjson.encode(v)
  end
  return v, v
end

--- A key that carries the message id ("m<id>:" and random bytes), or
-- nil; a producer-wide callback finds its message by it.
function M.key(rng, id)
  if rng:chance(0.15) then return nil end
  return ("m%d:%s"):format(id, rng:bytes(rng:int(0, 16)))
end

--- The id a key carries, or nil.
function M.id_of_key(key)
  return key and tonumber(key:match("^m(%d+):"))
end

--- Headers in one of the two shapes, and the {name, value} pairs a
-- report's header_list must hold: in order for pairs; sorted for a map
-- (whose order is the table's).
function M.headers(rng)
  local n = rng:int(1, 4)
  if rng:chance(0.5) then
    local list = {}
    for i = 1, n do
      list[i] = { rng:pick{ "h", "trace", "h2" }, rng:bytes(rng:int(0, 12)) }
    end
    return list, list
  end
  local map = {}
  for i = 1, n do map["h" .. rng:int(1, 6)] = rng:bytes(rng:int(0, 12)) end
  return map, M.sorted_pairs(map)
end

--- A map's {name, value} pairs, sorted by name.
function M.sorted_pairs(map)
  local pairs_list = {}
  for name, value in pairs(map) do pairs_list[#pairs_list + 1] = { name, value } end
  table.sort(pairs_list, function(a, b) return a[1] < b[1] end)
  return pairs_list
end

--- Misuse, which produce must refuse with an error, queueing nothing.
-- Each changes msg (and expect, what its report must show).
M.BAD_INPUTS = {
  fraction_partition = function(msg) msg.opts.partition = 0.5 end,
  number_header = function(msg) msg.opts.headers = { h = 1 } end,
  function_in_value = function(msg) msg.value = { f = print } end,
  nan_in_value = function(msg) msg.value = { n = 0 / 0 } end,
  bad_callback = function(msg) msg.opts.on_delivery = 1 end,
}

--- Inputs produce may refuse with an error or accept; if it accepts, the
-- report must show them as given (the partition, the whole topic name).
M.ODD_INPUTS = {
  huge_partition = function(msg, expect) msg.opts.partition, expect.partition = 2 ^ 32, 2 ^ 32 end,
  nul_in_topic = function(msg, expect) msg.topic = msg.topic .. "\0x"; expect.topic = msg.topic end,
}

return M
