-- The builtin encoder writes what lua-cjson (default settings) writes,
-- byte for byte, and refuses what it refuses with the same message.
local core = require("producers.core")
local cjson_module = require("cjson")
local cjson = cjson_module.new()

local PREFIX = "value: cannot encode table as JSON: "

local function both(t)
  local ok1, a = pcall(cjson.encode, t)
  local ok2, b = pcall(core.encode_value, t)
  if not ok1 then a = PREFIX .. a end
  return ok1, a, ok2, b
end

local function same(t)
  local ok1, a, ok2, b = both(t)
  assert.equal(ok1, ok2, tostring(a) .. " / " .. tostring(b))
  assert.equal(a, b)
end

-- A deterministic generator of awkward values.
local seed = 12345
local function rand(n)          -- 1..n, an LCG so every Lua gives the same sequence
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed % n + 1
end
local NUMBERS = { 0, 1, -1, 7, 12345, -12345, 99999999999999, -99999999999999, 1e14, -1e14,
  123456789012345, 2 ^ 53, -2 ^ 53, 2 ^ 63, 0.5, -0.25, 0.1, 1 / 3, 3.14159, 1e-7, 1e300,
  -1e-300, 6.02214076e23, 1700000000123, 4294967296, -0.0, 1e15 + 1 }
local function rand_string()
  local bytes = {}
  for i = 1, rand(12) - 1 do bytes[i] = string.char(rand(256) - 1) end
  return table.concat(bytes)
end
local gen
local ODD = { print, io.stdout, 0 / 0, math.huge, -math.huge }   -- refused by both
local function rand_value(depth)
  local kind = rand(depth > 3 and 5 or 8)
  if kind == 1 then return rand_string()
  elseif kind == 2 then return NUMBERS[rand(#NUMBERS)]
  elseif kind == 3 then return rand(2) == 1
  elseif kind == 4 then return cjson_module.null
  elseif kind == 5 then return rand(20) == 1 and ODD[rand(#ODD)] or rand_string()
  elseif kind == 6 or kind == 7 then return gen(depth + 1)
  else return {} end
end
function gen(depth)
  local t = {}
  local shape = rand(3)
  if shape == 1 then                        -- a list
    for i = 1, rand(6) do t[i] = rand_value(depth) end
  elseif shape == 2 then                    -- a list, with a far index or a name
    for i = 1, rand(6) do t[i] = rand_value(depth) end
    if rand(2) == 1 then t[rand(30)] = rand_value(depth) end
    if rand(3) == 1 then t.name = rand_value(depth) end
  else                                      -- an object
    for _ = 1, rand(6) do
      local k = rand(4) == 1 and NUMBERS[rand(#NUMBERS)] or rand_string()
      if k == k then t[k] = rand_value(depth) end
    end
  end
  return t
end

describe("builtin JSON encoder", function()
  it("matches lua-cjson on 5000 generated tables, refusals included", function()
    for _ = 1, 5000 do same(gen(0)) end
  end)

  it("matches lua-cjson on every byte in strings", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    same({ s = table.concat(all), [table.concat(all)] = 1 })
  end)

  it("matches lua-cjson on numbers around the edges", function()
    for _, n in ipairs(NUMBERS) do same({ n }) ; same({ [n ~= 0 and n or 1] = n }) end
    if math.type then
      same({ math.maxinteger, math.mininteger, 0x7fffffffffff, -0x7fffffffffff })
    end
  end)

  it("matches lua-cjson on arrays, holes and sparse arrays", function()
    same({ 1, 2, nil, 4 })
    same({ [1] = "a", [3] = "c" })
    same({ [1] = 1, [20] = 2 })       -- too sparse: refused by both
    same({ [11] = 1, [12] = 2, [1] = 0, [2] = 0, [3] = 0, [4] = 0, [5] = 0, [6] = 0 })
    same({ [1.5] = "x", [2] = "y" })
    same({ [0] = "zero", [1] = "one" })
    same({ [-1] = "neg" })
    same({})
    same({ {}, { {} }, { a = {} } })
  end)

  it("refuses what lua-cjson refuses, with its message", function()
    same({ f = print })
    same({ [true] = 1 })
    same({ co = coroutine.create(function() end) })
    same({ n = 0 / 0 })
    same({ n = math.huge })
    same({ n = -math.huge })
    same({ io.stdout })
    local deep = {}
    local t = deep
    for _ = 1, 1000 do t[1] = {}; t = t[1] end
    same(deep)
    local cycle = {}
    cycle.self = cycle
    same(cycle)
  end)

  it("encodes tables nested as deep as lua-cjson allows (the Lua stack grows with them)", function()
    local shapes = {
      function(t) return { a = t } end,             -- objects
      function(t, i) return { ["level" .. i] = t } end,   -- each with a key of its own
      function(t) return { t } end,                 -- lists
      function(t) return { [1] = t, [3] = 1 } end,  -- arrays with holes
    }
    for _, wrap in ipairs(shapes) do
      local t = {}
      for i = 1, 999 do t = wrap(t, i) end          -- 1000 levels with the innermost
      local ok, err = pcall(core.encode_value, t)
      assert.is_true(ok, err)
      same(t)
      same(wrap(t, 1000))                           -- 1001: refused by both
    end
  end)

  it("writes each key as itself while keys come and go and the collector runs", function()
    -- keys are remembered by the identity of their strings: new strings
    -- that may take the place of collected ones must not be taken for them
    for i = 1, 20000 do
      local t = { ["key" .. i] = i, ["k" .. i % 7] = true, shared = i }
      same(t)
      if i % 500 == 0 then collectgarbage() end
    end
  end)

  it("and lua-cjson can be chosen instead", function()
    local cj = cjson_module.new()
    local t = { event = "x", n = 2 ^ 53, tags = { "a", "b" } }
    assert.equal(cj.encode(t), core.encode_value(t, "lua-cjson"))
    assert.has_error(function() core.encode_value({ f = print }, "lua-cjson") end,
      PREFIX .. "Cannot serialise function: type not supported")
  end)
end)
