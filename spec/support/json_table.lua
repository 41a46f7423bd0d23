-- json_table.lua FORK_SO [LOCALE]: prints the README's comparison table
-- (Markdown): what the builtin encoder writes for each case, against
-- lua-cjson 2.1.0 (Debian's, found by require) and OpenResty's fork (the
-- cjson.so at FORK_SO, loaded as `cjson`, so the builtin encoder sees its
-- markers). With LOCALE, LC_NUMERIC is set to it before and after loading
-- the modules. spec/json/encoder_spec.lua runs it and checks the README.
local fork_so, locale = arg[1], arg[2]

if locale then assert(os.setlocale(locale, "numeric")) end
local core = require("producers.core")
local cjson21 = require("cjson")
package.loaded.cjson = nil
local fork = assert(package.loadlib(fork_so, "luaopen_cjson"))()
package.loaded.cjson = fork
if locale then assert(os.setlocale(locale, "numeric")) end

local decoder = fork.new()
decoder.decode_array_with_array_mt(true)

local CASES = {
  { "`{ id = 1234567890123456789 }`", function() return { id = 1234567890123456789 } end },
  { "`{ ts_us = 1764380000123456 }`", function() return { ts_us = 1764380000123456 } end },
  { "`{ 0.1 + 0.2 }`", function() return { 0.1 + 0.2 } end },
  { "`{ 1 / 3 }`", function() return { 1 / 3 } end },
  { "`{ 2^53 }` (a float)", function() return { 2 ^ 53 } end },
  { "`{ 2^63 }` (a float)", function() return { 2 ^ 63 } end },
  { "`{ 5e-324 }`", function() return { 5e-324 } end },
  { "`{ -0.0 }`", function() return { -0.0 } end },
  { "`{ 1.5 }`, LC_NUMERIC=de_DE.UTF-8", function() return { 1.5 } end },
  { '`{ [0.5] = "half" }`, LC_NUMERIC=de_DE.UTF-8', function() return { [0.5] = "half" } end },
  { "`{ 0 / 0 }`", function() return { 0 / 0 } end },
  { "`{ \"a/b\", \"\\127\" }`", function() return { "a/b", "\127" } end },
  { "`{}`", function() return {} end },
  { "`{ cjson.null }`", function() return { fork.null } end },
  { "`setmetatable({}, cjson.array_mt)`", function() return setmetatable({}, fork.array_mt) end },
  { "`setmetatable({ 1, 2 }, cjson.array_mt)`", function() return setmetatable({ 1, 2 }, fork.array_mt) end },
  { "`setmetatable({}, cjson.empty_array_mt)`", function() return setmetatable({}, fork.empty_array_mt) end },
  { "`{ tags = cjson.empty_array }`", function() return { tags = fork.empty_array } end },
  { "`{\"tags\":[]}` decoded with `decode_array_with_array_mt(true)`",
    function() return decoder.decode('{"tags":[]}') end },
  { "`setmetatable({}, { __len = ... })` (#t 2)",
    function() return setmetatable({}, { __len = function() return 2 end }) end },
}

local function cell(encode, t)
  local ok, s = pcall(encode, t)
  if ok then return "`" .. s .. "`" end
  s = tostring(s):gsub("^value: cannot encode table as JSON: ", "")
  return "error: " .. s
end

print("| value (" .. (jit and jit.version or _VERSION) .. ") | builtin | lua-cjson 2.1.0 | OpenResty's cjson " .. fork._VERSION .. " |")
print("| --- | --- | --- | --- |")
for _, case in ipairs(CASES) do
  local name, make = case[1], case[2]
  print(("| %s | %s | %s | %s |"):format(name, cell(core.encode_value, make()),
    cell(cjson21.encode, make()), cell(fork.encode, make())))
end
