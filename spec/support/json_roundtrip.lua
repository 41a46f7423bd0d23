-- json_roundtrip.lua OUT [LOCALE] [COUNT]: encodes a generated set of
-- tables with the builtin encoder (producers.core.encode_value) and writes
-- one line per table to OUT: a description of the Lua value (ASCII JSON
-- that names each number's subtype and bits and each string's bytes in
-- hex), a tab, and the encoder's bytes. spec/support/json_check.py parses
-- the bytes with Python's json module and compares them with the
-- descriptions. With LOCALE, LC_NUMERIC is set to it before and after the
-- module is loaded, as a host would.
local out_path, locale, count = arg[1], arg[2], tonumber(arg[3] or "") or 3000

if locale and locale ~= "" then
  assert(os.setlocale(locale, "numeric"), "cannot set LC_NUMERIC to " .. locale)
  -- C's printf now writes a comma (LuaJIT's string.format has its own)
  assert(jit or string.format("%.1f", 1.5) == "1,5", "not a comma-decimal locale: " .. locale)
end
local core = require("producers.core")
if locale and locale ~= "" then assert(os.setlocale(locale, "numeric")) end

local has_integers = math.type ~= nil

-- A deterministic generator: an LCG, so every Lua gives the same sequence.
local seed = 4242
local function rand(n)
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed % n + 1
end

-- Integers by arithmetic alone (Lua 5.3+ integers wrap, LuaJIT makes
-- floats of them), so this file also loads under 5.1 and LuaJIT.
local INTEGERS = {}
local function int(x) INTEGERS[#INTEGERS + 1] = x; INTEGERS[#INTEGERS + 1] = -x end
local p2, p10 = 1, 1
for _ = 0, 62 do int(p2); int(p2 - 1); int(p2 + 1); p2 = p2 * 2 end
for _ = 0, 18 do int(p10); int(p10 - 1); int(p10 + 1); p10 = p10 * 10 end
if has_integers then
  INTEGERS[#INTEGERS + 1] = math.maxinteger
  INTEGERS[#INTEGERS + 1] = math.mininteger
  INTEGERS[#INTEGERS + 1] = math.maxinteger - 1
  INTEGERS[#INTEGERS + 1] = math.mininteger + 1
end
local function rand_integer()
  local r = rand(4)
  if r == 1 then return INTEGERS[rand(#INTEGERS)] end
  if r == 2 then return rand(2001) - 1001 end
  local hi, lo = rand(2147483648) - 1, rand(2147483648) - 1
  local v = hi * 4294967296 + lo * 2 + rand(2) - 1     -- any 64-bit pattern (wraps)
  if r == 3 then v = v % (10 ^ rand(18)) end           -- a float under Lua 5.3+ ...
  if has_integers then v = math.tointeger(v) or v end  -- ... made an integer again
  return rand(2) == 1 and v or -v
end

local FLOATS = { 0.1 + 0.2, 1 / 3, 2 / 3, math.pi, -0.0, 0.0, 0.5, 1e-5, 1e-4, 1e16, 1e21, 1e22,
  5e-324, 2.2250738585072014e-308, 2.225073858507201e-308, 1.7976931348623157e308,
  123.456, 19.99, 1700000000.123, 9007199254740991.0, 9007199254740993.0, 2 ^ 53 + 2,
  -(2 ^ 53), 2 ^ 63, -(2 ^ 63), 2 ^ 64, 1e15 + 0.3, 100.0, -1.5e-7 }
for e = -1074, 1023 do FLOATS[#FLOATS + 1] = 2.0 ^ e end            -- every power of two
for e = -30, 30 do FLOATS[#FLOATS + 1] = tonumber("1e" .. e) end
local function rand_float()
  local r = rand(7)
  local x
  if r == 7 then                          -- any double from 2^-14 to 2^50, where decimals are tried first
    x = (1 + ((rand(67108864) - 1) * 67108864 + rand(67108864) - 1) / 4503599627370496) * 2.0 ^ (rand(65) - 15)
  elseif r == 1 then
    x = FLOATS[rand(#FLOATS)]
  elseif r == 2 then                      -- any normal double: 52 random bits, any exponent
    local m = 1 + ((rand(67108864) - 1) * 67108864 + rand(67108864) - 1) / 4503599627370496
    x = m * 2.0 ^ (rand(2046) - 1023)
  elseif r == 3 then                      -- a subnormal
    x = ((rand(1048576) - 1) * 4294967296 + rand(2147483648)) * 2.0 ^ -1074
  elseif r == 4 then                      -- a decimal of up to 17 digits (no point: any locale)
    local digits = tostring(rand(999999999)) .. tostring(rand(99999999))
    x = tonumber(digits:sub(1, rand(17)) .. "e" .. (rand(60) - 40))
  elseif r == 5 then                      -- around the 2^53 boundary, integral or not
    x = (rand(2) == 1 and 2 ^ 53 or 2 ^ 52) + (rand(9) - 5) * (rand(2) == 1 and 1 or 0.5)
  else                                    -- a few digits after the point, or halfway between
    x = (rand(2000001) - 1000001 + (rand(2) - 1) / 2) / 10 ^ rand(8)
  end
  return rand(2) == 1 and x or -x
end

local function rand_string()
  local bytes = {}
  for i = 1, rand(16) - 1 do bytes[i] = string.char(rand(256) - 1) end
  return table.concat(bytes)
end

local gen
local function rand_value(depth)
  local kind = rand(depth > 3 and 5 or 8)
  if kind == 1 then return rand_string()
  elseif kind == 2 then return rand_integer()
  elseif kind == 3 then return rand_float()
  elseif kind == 4 then return rand(2) == 1
  elseif kind == 5 then return rand(3) == 1 and rand_float() or rand_integer()
  else return gen(depth + 1) end
end

local function rand_key()
  local r = rand(6)
  if r == 1 then return rand_integer() end
  if r == 2 then
    local x = rand_float()
    return x == x and x ~= 0 and x or 1     -- NaN cannot be a key; 0.0 would become 0
  end
  return rand_string()
end

function gen(depth)
  local t = {}
  local shape = rand(4)
  if shape == 1 then                        -- a list
    for i = 1, rand(8) do t[i] = rand_value(depth) end
  elseif shape == 2 then                    -- an array with holes, not too sparse
    for _ = 1, rand(6) do t[rand(12)] = rand_value(depth) end
  elseif shape == 3 then                    -- an object
    for _ = 1, rand(6) do t[rand_key()] = rand_value(depth) end
  else                                      -- empty, or a list with a name
    if rand(2) == 1 then
      for i = 1, rand(4) do t[i] = rand_value(depth) end
      t.name = rand_value(depth)
    end
  end
  return t
end

-- The description: ["i", decimal], ["f", C99 hex float], ["s", hex
-- bytes], ["b", bool], ["n"], ["a", [items]], ["o", [[key, value]...]]
-- in the order pairs() gives (the encoder's order), or nil for a table
-- the encoder refuses as excessively sparse (not written).
local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end
local function number(x)
  if has_integers and math.type(x) == "integer" then return ('["i","%d"]'):format(x) end
  -- the locale's decimal point, if any, back to a point for Python
  return ('["f","%s"]'):format((("%a"):format(x):gsub("[^%w%+%-]", ".")))
end
local function describe(v)
  local tv = type(v)
  if tv == "number" then return number(v)
  elseif tv == "string" then return ('["s","%s"]'):format(hex(v))
  elseif tv == "boolean" then return ('["b",%s]'):format(tostring(v))
  elseif tv == "nil" then return '["n"]'
  end
  local max, items, array = 0, 0, next(v) ~= nil
  for k in pairs(v) do
    if type(k) == "number" and k >= 1 and math.floor(k) == k then
      if k > max then max = k end
      items = items + 1
    else
      array = false
    end
  end
  local parts = {}
  if array then
    if max > items * 2 and max > 10 then return nil end
    for i = 1, max do
      parts[i] = describe(v[i])
      if not parts[i] then return nil end
    end
    return '["a",[' .. table.concat(parts, ",") .. ']]'
  end
  for k, x in pairs(v) do
    local d = describe(x)
    if not d then return nil end
    parts[#parts + 1] = "[" .. (type(k) == "string" and describe(k) or number(k)) .. "," .. d .. "]"
  end
  return '["o",[' .. table.concat(parts, ",") .. ']]'
end

local out = assert(io.open(out_path, "wb"))
local written = 0
local function emit(t)
  local d = describe(t)
  if not d then return end
  out:write(d, "\t", core.encode_value(t), "\n")
  written = written + 1
end

-- every integer and float of the lists, as values and as keys
for _, x in ipairs(INTEGERS) do emit({ x }); emit({ [x] = true, k = x }) end
for _, x in ipairs(FLOATS) do emit({ x }); if x ~= 0 then emit({ [x] = true, k = x }) end end
-- every byte value, alone and all in one string, as a value and as a key
local all = {}
-- (apart: { "1", ["1"] = 49 } has the name "1" twice, refused since issue 20)
for i = 0, 255 do all[#all + 1] = string.char(i); emit({ string.char(i) }); emit({ [string.char(i)] = i }) end
emit({ s = table.concat(all), [table.concat(all)] = 1 })
-- and the generated set
for _ = 1, count do
  local n = {}
  for i = 1, 8 do n[i] = rand(2) == 1 and rand_float() or rand_integer() end
  emit(n)
  emit(gen(0))
end
out:close()
print(("json_roundtrip: %d tables written%s"):format(written, locale and locale ~= "" and " under " .. locale or ""))
