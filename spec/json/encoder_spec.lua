-- The builtin encoder loses no data: Python's json module reads back every
-- value of a large generated set (spec/support/json_roundtrip.lua and
-- json_check.py), under a comma-decimal locale too. Where lua-cjson 2.1.0
-- loses nothing (strings, integers below 1e14, floats of up to 14
-- significant digits, the tables' shapes and the refusals) it writes the
-- same bytes. OpenResty's cjson markers give the fork's output.
local core = require("producers.core")
local H = require("helpers")
local U = require("support.json_util")
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
-- numbers lua-cjson 2.1.0 ("%.14g") writes without loss, as we do
local NUMBERS = { 0, 1, -1, 7, 12345, -12345, 99999999999999, -99999999999999, 0.5, -0.25,
  0.1, 3.14159, 1e-7, 1e300, -1e-300, 6.02214076e23, 1700000000123, 4294967296, 1e100 }
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
      -- (not a large integer: lua-cjson's int overflows, the result depends on the order)
      local k = rand(4) == 1 and NUMBERS[rand(#NUMBERS)] or rand_string()
      if type(k) == "number" and k == math.floor(k) and math.abs(k) >= 2 ^ 31 then k = -math.abs(k) end
      if k == k then t[k] = rand_value(depth) end
    end
  end
  return t
end

describe("builtin JSON encoder", function()
  it("matches lua-cjson 2.1.0 where it loses nothing, on 5000 generated tables, refusals included", function()
    for _ = 1, 5000 do same(gen(0)) end
  end)

  it("matches lua-cjson on every byte in strings", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    same({ s = table.concat(all), [table.concat(all)] = 1 })
  end)

  it("matches lua-cjson on numbers it writes without loss", function()
    for _, n in ipairs(NUMBERS) do same({ n }) ; same({ [n ~= 0 and n or 1] = n }) end
    same({ 0x7fffffff, -0x7fffffff, 2 ^ 40, 4294967296 * 1000 })
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
    local t = { event = "x", n = 2 ^ 53, f = 0.1 + 0.2, tags = { "a", "b" } }
    assert.equal(cj.encode(t), core.encode_value(t, "lua-cjson"))
    assert.has_error(function() core.encode_value({ f = print }, "lua-cjson") end,
      PREFIX .. "Cannot serialise function: type not supported")
  end)
end)

describe("builtin JSON encoder, without loss", function()
  local function roundtrip(env, locale)
    local out = os.tmpname()
    local ok, err = pcall(function()
      U.run_script(env, "json_roundtrip.lua", H.shell_quote(out) .. " " .. (locale or "''"))
      local verdict = U.python_check(out)
      assert.truthy(verdict:match("^ok %d+"), verdict)
      assert.truthy(tonumber(verdict:match("%d+")) > 10000, verdict)
    end)
    os.remove(out)
    assert(ok, err)
  end

  it("writes values Python's json module reads back exactly: integers at every magnitude, floats, every byte, nested and sparse tables", function()
    roundtrip("")
  end)

  it("writes the same under a comma-decimal LC_NUMERIC set before and after loading", function()
    roundtrip(U.locale_env(), U.LOCALE)
  end)

  it("writes integers with every digit", function()
    if not math.type then return end                -- LuaJIT, 5.1, 5.2: numbers are floats
    assert.equal('{"id":1234567890123456789}', core.encode_value({ id = 1234567890123456789 }))
    assert.equal('[1764380000123456,9223372036854775807,-9223372036854775808]',
      core.encode_value({ 1764380000123456, math.maxinteger, math.mininteger }))
    assert.equal('{"-9223372036854775808":1}', core.encode_value({ [math.mininteger] = 1 }))
  end)

  it("writes floats as Python's repr, integral ones within 2^53 as integers, -0.0 with its sign", function()
    local cases = {
      { 0.1 + 0.2, "0.30000000000000004" }, { 1 / 3, "0.3333333333333333" }, { 1.5, "1.5" },
      { 100.0, "100" }, { 2 ^ 53, "9007199254740992" }, { -(2 ^ 53), "-9007199254740992" },
      { 2 ^ 53 + 2, "9007199254740994.0" }, { 1e16, "1e+16" }, { 2 ^ 63, "9.223372036854776e+18" },
      { 1e300, "1e+300" }, { 5e-324, "5e-324" }, { 2.2250738585072014e-308, "2.2250738585072014e-308" },
      { 1e-5, "1e-05" }, { 0.0001, "0.0001" }, { -1.5e-7, "-1.5e-07" }, { 123.456, "123.456" },
      { 1700000000.123, "1700000000.123" }, { -0.0, "-0.0" }, { 0.0, "0" },
    }
    for _, c in ipairs(cases) do
      assert.equal("[" .. c[2] .. "]", core.encode_value({ c[1] }))
    end
    assert.equal('{"0.5":"half"}', core.encode_value({ [0.5] = "half" }))
    assert.equal('{"-1e+300":1}', core.encode_value({ [-1e300] = 1 }))
  end)

  it("refuses NaN and infinities, as values and as keys, naming the number", function()
    local msg = PREFIX .. "Cannot serialise number: must not be NaN or Inf"
    for _, t in ipairs({ { 0 / 0 }, { n = math.huge }, { -math.huge }, { [math.huge] = 1 } }) do
      assert.has_error(function() core.encode_value(t) end, msg)
    end
  end)

  it("loads lua-cjson only for json = 'lua-cjson': a host without it produces tables", function()
    local out, ok = H.run_lua(([[
      package.path = "lua/?.lua;lua/?/init.lua"
      package.cpath = %q
      assert(not pcall(require, "cjson"), "cjson found")
      package.loaded.cjson = nil
      local producers = require("producers")
      assert(package.loaded.cjson == nil, "cjson loaded")
      local values = {}
      local p = producers.kafka.new{ config = { ["test.mock.num.brokers"] = 1 }, log_level = "warn",
        on_delivery = function(err, r) assert(not err, err); values[#values + 1] = r.value end }
      assert(p:produce("t", "k", { n = 1, tags = { "a" } }))
      assert(p:flush(10))
      p:close()
      print(values[1], producers.memory.new():produce("t", "k", { 0.5 }))
      local ok, err = pcall(producers.kafka.new, { config = { ["test.mock.num.brokers"] = 1 }, json = "lua-cjson" })
      print(ok, err)
    ]]):format(U.build .. "/?.so"))
    assert(ok, out)
    assert.truthy(out:find('{"n":1,"tags":["a"]}', 1, true) or out:find('{"tags":["a"],"n":1}', 1, true), out)
    assert.truthy(out:find('json = "lua-cjson": module \'cjson\' not found', 1, true), out)
  end)
end)

-- How the encoder reads a loaded module's markers, without OpenResty's
-- fork: a stand-in module table holds array_mt, empty_array_mt and
-- empty_array (a light userdata), as the fork's module does. The bytes
-- are the fork's (the cases below compare with the fork itself when its
-- sources are present).
describe("the markers of a loaded cjson module (a stand-in for OpenResty's)", function()
  local M, saved, saved_safe
  setup(function()
    M = { array_mt = {}, empty_array_mt = {}, empty_array = U.light_userdata(), null = cjson_module.null }
    saved, saved_safe = package.loaded.cjson, package.loaded["cjson.safe"]
  end)
  before_each(function() package.loaded.cjson = M end)
  after_each(function() package.loaded.cjson, package.loaded["cjson.safe"] = saved, saved_safe end)

  it("array_mt: elements 1 to #t, holes null, other keys left out", function()
    assert.equal("[]", core.encode_value(setmetatable({}, M.array_mt)))
    assert.equal('[1,2,"x"]', core.encode_value(setmetatable({ 1, 2, "x" }, M.array_mt)))
    local holes = setmetatable({ 1, nil, 3 }, M.array_mt)     -- #holes: 3 (Lua 5.4) or 1 (LuaJIT)
    assert.equal(#holes == 3 and "[1,null,3]" or "[1]", core.encode_value(holes))
    assert.equal("[1,2]", core.encode_value(setmetatable({ 1, 2, name = "x" }, M.array_mt)))
    assert.equal("[]", core.encode_value(setmetatable({ name = "x" }, M.array_mt)))
    assert.equal('[[[]],[null]]', core.encode_value(
      { setmetatable({ setmetatable({}, M.array_mt) }, M.array_mt), { M.null } }))
  end)

  it("empty_array_mt: an array by lua-cjson's rules, else elements 1 to #t", function()
    assert.equal("[]", core.encode_value(setmetatable({}, M.empty_array_mt)))
    assert.equal("[1,2]", core.encode_value(setmetatable({ 1, 2 }, M.empty_array_mt)))
    assert.equal("[]", core.encode_value(setmetatable({ name = "x" }, M.empty_array_mt)))
    assert.equal("[1,2]", core.encode_value(setmetatable({ 1, 2, name = "x" }, M.empty_array_mt)))
  end)

  it("empty_array: [] wherever it stands", function()
    assert.equal('{"tags":[]}', core.encode_value({ tags = M.empty_array }))
    assert.equal("[[]]", core.encode_value({ M.empty_array }))
  end)

  it("are read from cjson.safe too", function()
    package.loaded.cjson = nil
    package.loaded["cjson.safe"] = M
    assert.equal("[[],[]]", core.encode_value({ setmetatable({}, M.array_mt), M.empty_array }))
  end)

  it("are looked up at each use: a module unloaded or replaced takes its markers' meaning away", function()
    package.loaded.cjson = nil
    assert.equal("{}", core.encode_value(setmetatable({}, M.array_mt)))
    assert.has_error(function() core.encode_value({ M.empty_array }) end,
      PREFIX .. "Cannot serialise userdata: type not supported")
    package.loaded.cjson = { array_mt = {}, empty_array_mt = {} }      -- another module's
    assert.equal("{}", core.encode_value(setmetatable({}, M.empty_array_mt)))
    package.loaded.cjson = cjson_module                               -- lua-cjson 2.1.0: none
    assert.equal("{}", core.encode_value(setmetatable({}, M.array_mt)))
    package.loaded.cjson = M
    assert.equal("[]", core.encode_value(setmetatable({}, M.array_mt)))
  end)

  it("leave a table whose metatable is no marker to lua-cjson's rules", function()
    assert.equal("{}", core.encode_value(setmetatable({}, {})))
    assert.equal("[1,2]", core.encode_value(setmetatable({ 1, 2 }, { __index = M.array_mt })))
  end)
end)

-- OpenResty's fork itself, built from its sources when they are present
-- (beside CI's checkout, or $PRODUCERS_OPENRESTY_CJSON); else each case is
-- pending with the reason.
local FORK, NO_FORK = U.load_openresty_cjson()
local it_fork = FORK and it or function(name) pending(name .. ": " .. NO_FORK) end

describe("OpenResty's cjson markers", function()
  local fork, saved

  setup(function()
    fork = FORK
    saved = package.loaded.cjson
  end)
  before_each(function() package.loaded.cjson = fork end)
  after_each(function() package.loaded.cjson = saved end)

  local function as_fork(t)
    local want = fork.encode(t)
    assert.equal(want, core.encode_value(t))
    return want
  end

  it_fork("encode as the fork encodes when the loaded cjson defines them", function()
    assert.equal("[]", as_fork(setmetatable({}, fork.array_mt)))
    assert.equal("[]", as_fork(setmetatable({}, fork.empty_array_mt)))
    assert.equal('{"tags":[]}', as_fork({ tags = fork.empty_array }))
    assert.equal("[[]]", as_fork({ fork.empty_array }))
    as_fork(setmetatable({ 1, 2, "x" }, fork.array_mt))
    as_fork(setmetatable({ 1, nil, 3 }, fork.array_mt))           -- a hole: null
    as_fork(setmetatable({ 1, 2, name = "x" }, fork.array_mt))      -- other keys left out
    as_fork(setmetatable({ name = "x" }, fork.array_mt))
    as_fork(setmetatable({ 1, 2 }, fork.empty_array_mt))
    as_fork(setmetatable({ name = "x" }, fork.empty_array_mt))
    as_fork(setmetatable({ 1, 2, name = "x" }, fork.empty_array_mt))
    as_fork({ a = setmetatable({ setmetatable({}, fork.array_mt) }, fork.array_mt), b = { fork.null } })
  end)

  it_fork("and through cjson.safe, the fork's other name", function()
    package.loaded.cjson = nil
    package.loaded["cjson.safe"] = fork
    local ok, err = pcall(function()
      assert.equal('[[],[]]', core.encode_value({ setmetatable({}, fork.array_mt), fork.empty_array }))
    end)
    package.loaded["cjson.safe"] = nil
    assert(ok, err)
  end)

  it_fork("re-encode a body decoded with decode_array_with_array_mt unchanged", function()
    local d = fork.new()
    d.decode_array_with_array_mt(true)
    for _, body in ipairs({ '{"tags":[]}', '{"a":[[],[1,2],{}]}', '[]', '[{"x":[]},[]]' }) do
      assert.equal(body, core.encode_value(d.decode(body)))
      as_fork(d.decode(body))
    end
  end)

  it_fork("write cjson.null as null", function()
    assert.equal('[null,null]', core.encode_value({ fork.null, cjson_module.null }))
  end)

  it_fork("mean nothing when the loaded cjson is one without them (lua-cjson 2.1.0)", function()
    package.loaded.cjson = cjson_module
    assert.equal("{}", core.encode_value(setmetatable({}, fork.array_mt)))
    assert.has_error(function() core.encode_value({ fork.empty_array }) end,
      PREFIX .. "Cannot serialise userdata: type not supported")
  end)

  it_fork("give docs/json.md's table (Lua 5.4)", function()
    local table_md = U.run_script(U.locale_env(), "json_table.lua",
      H.shell_quote(U.openresty_cjson()) .. " " .. U.LOCALE)
    assert.truthy(table_md:match("^| value"), table_md)
    if _VERSION == "Lua 5.4" and not jit then
      local doc = assert(H.read("docs/json.md"))
      assert.truthy(doc:find(table_md, 1, true) or (doc .. "\n"):find(table_md, 1, true),
        "docs/json.md lacks the table spec/support/json_table.lua prints:\n" .. table_md)
    end
  end)
end)

describe("the json option", function()
  local producers = require("producers")
  local MOCK = { ["test.mock.num.brokers"] = 1 }

  it("takes 'builtin', 'lua-cjson' or a function; anything else raises naming it", function()
    for _, json in ipairs({ "builtin", "lua-cjson", function() return "" end,
                            setmetatable({}, { __call = function() return "" end }) }) do
      producers.kafka.new{ config = MOCK, json = json }:close()
    end
    local want = "producers.kafka.new: json must be 'builtin', 'lua-cjson' or a function, got "
    assert.has_error(function() producers.kafka.new{ config = MOCK, json = "cjson" } end, want .. "'cjson'")
    assert.has_error(function() producers.kafka.new{ config = MOCK, json = 42 } end, want .. "number")
    assert.has_error(function() producers.kafka.new{ config = MOCK, json = {} } end, want .. "table")
  end)

  it("calls a function for every table value; strings and nil go as they are", function()
    local calls, got = {}, {}
    local p = producers.kafka.new{ config = MOCK, log_level = "warn",
      json = function(v) calls[#calls + 1] = v; return "<" .. v.n .. ">" end,
      on_delivery = function(err, r) assert(not err, err); got[r.key] = r.value or false end }
    local t = { n = 7 }
    assert.is_true(p:produce("enc", "table", t))
    assert.is_true(p:produce("enc", "string", "raw"))
    assert.is_true(p:produce("enc", "nil", nil))
    assert.is_true(p:flush(10))
    p:close()
    assert.equal(1, #calls)
    assert.equal(t, calls[1])
    assert.same({ table = "<7>", string = "raw", ["nil"] = false }, got)
  end)

  it("raises, queueing nothing, when the function raises or returns no string", function()
    local p = producers.kafka.new{ config = MOCK, log_level = "warn",
      json = function(v) if v.bad then error("boom", 0) end; return v.ret end }
    assert.has_error(function() p:produce("enc", "k", { bad = true }) end, "value: encoder failed: boom")
    assert.has_error(function() p:produce("enc", "k", { ret = 42 }) end,
      "value: encoder must return a string, got number")
    assert.has_error(function() p:produce("enc", "k", {}) end,
      "value: encoder must return a string, got nil")
    assert.equal(0, p:queue_length())
    p:close()
  end)

  it("is honoured by core.encode_value, for backends written in Lua", function()
    local fn = function(v) return "#" .. #v end
    assert.equal("#2", core.encode_value({ 1, 2 }, fn))
    assert.equal("s", core.encode_value("s", fn))
    assert.is_nil(core.encode_value(nil, fn))
    assert.has_error(function() core.encode_value({}, function() error("no", 0) end) end,
      "value: encoder failed: no")
    assert.has_error(function() core.encode_value({}, function() return true end) end,
      "value: encoder must return a string, got boolean")
  end)
end)
