-- Floats as the builtin encoder writes them (src/core/json_double.c): the
-- shortest decimal that reads back as the same double, of those the
-- nearest, checked against Python (spec/support/json_floats_check.py):
-- float(text) gives the same bits back, and the digits are repr's, as
-- many and the same. Values: random bit patterns, subnormals, every
-- power of two and its neighbours, values near DBL_MAX and DBL_MIN,
-- integers around 2^53 and powers of ten, decimals of 1 to 17 digits,
-- computed values, the cases Ryu's and Schubfach's authors list as hard,
-- and the doubles src/core/json_double_gen.py finds hardest for this
-- algorithm. A fixed seed; JSON_FLOATS_COUNT=N in the environment asks
-- for N random values instead of 100,000 (the fixed families come on top).
local core = require("producers.core")
local H = require("helpers")

local PLAIN = "env -u LD_PRELOAD "   -- Python without the sanitizer build's runtimes

local function sh(cmd)
  local out, ok = H.sh(cmd)
  if not ok then error(("command failed: %s\n%s"):format(cmd, out), 2) end
  return out
end

-- Doubles from their two 32-bit halves and back; 16 hex digits.
local from_words, split
if string.unpack then
  from_words = function(hi, lo) return (string.unpack("<d", string.pack("<I4I4", lo, hi))) end
  split = function(x)
    local lo, hi = string.unpack("<I4I4", string.pack("<d", x))
    return hi, lo
  end
else                                    -- LuaJIT
  local ffi = require("ffi")
  local u = ffi.new("union { double d; uint32_t w[2]; }")
  assert(ffi.abi("le"), "a little-endian machine")
  from_words = function(hi, lo)
    u.w[0], u.w[1] = lo, hi
    return u.d
  end
  split = function(x)
    u.d = x
    return tonumber(u.w[1]), tonumber(u.w[0])
  end
end
local function hex(hi, lo) return ("%08x%08x"):format(hi, lo) end

-- A deterministic generator (Park and Miller's), the same under every Lua.
local seed = 20261129
local function rand16()
  seed = seed * 48271 % 2147483647
  return math.floor(seed / 32768)      -- the top 16 of its 31 bits
end
local function word() return rand16() * 65536 + rand16() end
local function rand(n) return word() % n end                     -- 0 .. n - 1
local TWO20 = 1048576

-- Cases the papers' authors and Ryu's tests name, as decimal text.
local LITERALS = {
  "1", "0.1", "0.2", "0.3", "1.7976931348623157e308", "2.2250738585072014e-308",
  "2.225073858507201e-308", "4.9e-324", "5e-324", "1e-323", "1e23", "2e23", "8.41e21",
  "9.999999999999999e22", "1.9400994884341945e25", "1.8531501765868567e21",
  "-3.347727380279489e33", "1.9430376160308388e16", "-6.9741824662760956e19",
  "4.3816050601147837e18", "2.9802322387695312e-8", "-2.109808898695963e16",
  "4.940656e-318", "1.18575755e-316", "2.989102097996e-312", "9.0608011534336e15",
  "4.708356024711512e18", "9.409340012568248e18", "1.2345678", "5.764607523034235e39",
  "1.152921504606847e40", "2.305843009213694e40", "1.2", "1.23", "1.234", "1.2345",
  "1.23456", "1.234567", "1.2345678", "1.23456789", "1.234567895", "1.2345678901",
  "1.23456789012", "1.234567890123", "1.2345678901234", "1.23456789012345",
  "1.234567890123456", "1.2345678901234567", "4.294967294", "4.294967295", "4.294967296",
  "4.294967297", "4.294967298", "1.7800590868057611e-307", "2.8480945388892175e-306",
  "2.446494580089078e-296", "4.8929891601781557e-296", "1.8014398509481984e16",
  "3.6028797018963964e16", "2.900835519859558e-216", "5.801671039719115e-216",
  "3.196104012172126e-27", "9007199254740991", "9007199254740992", "9007199254740993",
  "9007199254740994", "9007199254740995", "18014398509481984", "18014398509481988",
  "123456789012345680", "0.3333333333333333", "0.30000000000000004", "2.0e-3", "1.0e-4",
  "9.999999999999999e-5", "1e16", "9999999999999998", "1e15", "999999999999999.9",
  "0.000123456789", "123456.789e-310", "1.5e300", "1e308", "1e-307", "6.02214076e23",
  "1.602176634e-19", "299792458.0", "3.141592653589793", "2.718281828459045",
  "562949953421312.25", "562949953421312.75",
}

-- The fixed families: {hi, lo} pairs.
local function fixed_values(hard_hex)
  local v = {}
  local function add(hi, lo) v[#v + 1] = { hi, lo } end
  for _, text in ipairs(LITERALS) do add(split(assert(tonumber(text)))) end
  for _, h in ipairs(hard_hex) do
    add(tonumber(h:sub(1, 8), 16), tonumber(h:sub(9, 16), 16))
  end
  -- every binary exponent: the power of two (the uneven gap below it),
  -- its neighbours above, the largest significand below the next
  for biased = 0, 2046 do
    local hi = biased * TWO20
    add(hi, 0); add(hi, 1); add(hi, 2); add(hi + TWO20 - 1, 4294967295); add(hi + TWO20 - 1, 4294967294)
  end
  -- the smallest subnormals, exhaustively, and the largest
  for lo = 1, 2000 do add(0, lo) end
  for j = 0, 999 do add(TWO20 - 1, 4294967295 - j) end
  -- near DBL_MIN and DBL_MAX
  for _ = 1, 500 do
    for _, biased in ipairs({ 1, 2, 2045, 2046 }) do add(biased * TWO20 + rand(TWO20), word()) end
  end
  -- integers around powers of two (2^53 above all) and powers of ten
  for p = 50, 70 do
    for j = -40, 40 do add(split(2 ^ p + j * 2 ^ math.max(0, p - 52))) end
  end
  for e = 14, 23 do
    local hi, lo = split(assert(tonumber("1e" .. e)))
    for j = -20, 20 do
      local l = lo + j
      add(hi + math.floor(l / 4294967296), l % 4294967296)
    end
  end
  -- negative ones too (the sign is one bit)
  for i = 1, #v, 7 do add((v[i][1] + 2147483648) % 4294967296, v[i][2]) end
  return v
end

-- One random value.
local function random_value()
  local r = rand(100)
  if r < 40 then                        -- any bit pattern
    return word(), word()
  elseif r < 50 then                    -- a subnormal
    return rand(TWO20) + (rand(2) == 1 and 2147483648 or 0), word()
  elseif r < 70 then                    -- a decimal of 1 to 17 digits, any exponent
    local digits = {}
    for i = 1, rand(17) + 1 do digits[i] = tostring(rand(10)) end
    local x = tonumber(("%se%d"):format(table.concat(digits), rand(640) - 330))
    if x == 0 or x == math.huge then x = 1.5 end
    return split(x)
  elseif r < 85 then                    -- a computed value: 53 random bits scaled
    local f = (rand(2097152) * 4294967296 + word()) / 9007199254740992
    return split((f - 0.5) * 10 ^ (rand(16) - 5))
  else                                  -- a price, a measure: few decimals
    local cents = rand(65536) * 1000 + rand(1000)
    return split(cents / 10 ^ (rand(4) + 1))
  end
end

local function finite(hi) return hi % 2147483648 < 2146435072 end   -- exponent not all ones

-- Writes the lines json_floats_check.py reads; returns how many values.
local function write_values(path, fixed, random_count)
  local out = assert(io.open(path, "w"))
  local n = 0
  local values, hexes = {}, {}
  local function flush()
    if #values > 0 then
      out:write("a\t", table.concat(hexes, ","), "\t", core.encode_value(values), "\n")
      values, hexes = {}, {}
    end
  end
  local function take(hi, lo)
    if not finite(hi) then return false end
    local x = from_words(hi, lo)
    values[#values + 1], hexes[#hexes + 1] = x, hex(hi, lo)
    n = n + 1
    if #values == 500 then flush() end
    -- every 50th also as an object's key (not integral ones: Lua 5.3+
    -- makes those integer keys)
    if n % 50 == 0 and x ~= math.floor(x) then
      out:write("k\t", hex(hi, lo), "\t", core.encode_value({ [x] = true }), "\n")
    end
    return true
  end
  for _, p in ipairs(fixed) do take(p[1], p[2]) end
  local fixed_count, taken = n, 0
  while taken < random_count do
    if take(random_value()) then taken = taken + 1 end
  end
  flush()
  out:close()
  return n, fixed_count
end

describe("builtin JSON encoder, floats", function()
  local hard

  setup(function()
    hard = {}
    for h in sh(PLAIN .. "python3 src/core/json_double_gen.py --hard"):gmatch("%x+") do hard[#hard + 1] = h end
  end)

  it("writes the table json_double_gen.py writes, whose proofs hold", function()
    local out = sh(PLAIN .. "python3 src/core/json_double_gen.py --check")
    assert.truthy(out:find("json_double_table.h is up to date", 1, true), out)
    assert.truthy(out:find("2^-69 is needed", 1, true), out)
  end)

  it("writes every double as Python's repr: the same bits back, as few digits, the same digits", function()
    assert.truthy(#hard > 5000, "json_double_gen.py --hard: " .. #hard .. " doubles")
    local count = tonumber(os.getenv("JSON_FLOATS_COUNT") or "") or 100000
    local path = os.tmpname()
    local ok, err = pcall(function()
      local n, fixed = write_values(path, fixed_values(hard), count)
      local verdict = sh(PLAIN .. "python3 spec/support/json_floats_check.py " .. H.shell_quote(path))
      assert.truthy(verdict:match("^ok %d+"), verdict)
      assert.truthy(tonumber(verdict:match("^ok (%d+)")) >= n, verdict)    -- and some as keys
      assert.equal(fixed + count, n)
      print(("\n  %s: %d values (%d random, %d fixed), some also as keys"):format(
        verdict:gsub("\n", ""), n, n - fixed, fixed))
    end)
    os.remove(path)
    assert(ok, err)
  end)

  it("writes a few values as the contract shows them", function()
    local cases = {
      { 5e-324, "5e-324" }, { 1e23, "1e+23" }, { 2 ^ -1074 * 3, "1.5e-323" },
      { 1.7976931348623157e308, "1.7976931348623157e+308" }, { -2.2250738585072014e-308, "-2.2250738585072014e-308" },
      { 2.225073858507201e-308, "2.225073858507201e-308" }, { 0.1, "0.1" }, { 1 / 3, "0.3333333333333333" },
      { 2 ^ 53 + 2, "9007199254740994.0" }, { 1e16, "1e+16" }, { 9999999999999998.0, "9999999999999998.0" },
      { 123456789012345680.0, "1.2345678901234568e+17" }, { 1e-4, "0.0001" }, { 1e-5, "1e-05" },
      { 562949953421312.25, "562949953421312.2" }, { 562949953421312.75, "562949953421312.8" },
      { 1e100, "1e+100" }, { -1e-100, "-1e-100" }, { 19.99, "19.99" }, { -0.0, "-0.0" },
    }
    for _, c in ipairs(cases) do
      assert.equal("[" .. c[2] .. "]", core.encode_value({ c[1] }))
      if c[1] ~= math.floor(c[1]) then   -- Lua 5.3+ makes integral keys integers
        assert.equal('{"' .. c[2] .. '":1}', core.encode_value({ [c[1]] = 1 }))
      end
    end
  end)
end)
