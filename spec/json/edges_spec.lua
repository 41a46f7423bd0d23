-- JSON edge cases a differential fuzzer found in the builtin encoder
-- (issue 20): a light userdata taken for a remembered string key, out of
-- memory aborting the host, a buffer that never shrank, and duplicate
-- member names ({[1] = "a", ["1"] = "b"}). Each through every path that
-- encodes: produce on the Kafka backend, core.encode_value, the memory
-- backend, producers.ngx; what Python's json module reads is the proof.
local producers = require("producers")
local core = require("producers.core")
local H = require("helpers")

local PREFIX = "value: cannot encode table as JSON: "
local _, build = H.dirs("build")
local LUA = os.getenv("PRODUCERS_LUA") or "lua5.4"
local PLAIN = "env -u LD_PRELOAD "            -- tools that are not the library
local ASAN = (os.getenv("LD_PRELOAD") or ""):find("libasan", 1, true) ~= nil
local MOCK = { ["test.mock.num.brokers"] = 1 }

--- Python's verdicts (spec/support/json_names.py) on JSON texts: "dup
-- NAME", "bad ...", or the value in a canonical form.
local function python(texts)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  for _, t in ipairs(texts) do
    assert(not t:find("\n", 1, true), t)
    f:write(t, "\n")
  end
  f:close()
  local out, ok = H.sh(PLAIN .. "python3 spec/support/json_names.py " .. H.shell_quote(path))
  os.remove(path)
  assert(ok, out)
  local lines = {}
  for l in out:gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  assert.equal(#texts, #lines, out)
  return lines
end

--- Calls fn(); asserts it raises msg (after the caller's position, if any).
local function raises(msg, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "did not raise: " .. msg)
  err = tostring(err)
  assert.truthy(err == msg or (err:sub(-#msg) == msg and err:sub(1, -#msg - 1):match("^[^\n]*:%d+: $")),
    ("expected %q, got %q"):format(msg, err))
end

-- The paths that encode a table value, each a function(t) returning the
-- bytes produced (raising what produce raised, with nothing queued).
local kafka_p, got = nil, {}
local function via_kafka(t)
  local n = #got
  local ok, err = pcall(kafka_p.produce, kafka_p, "edges", "k", t)
  if not ok then
    assert.equal(0, kafka_p:queue_length())
    error(err, 0)
  end
  assert.is_true(ok)
  assert.is_true(kafka_p:flush(10))
  assert.equal(n + 1, #got)
  return got[#got]
end

local function via_memory(t)
  local m = producers.memory.new()
  local ok, err = pcall(m.produce, m, "edges", "k", t)
  if not ok then
    assert.equal(0, m:queue_length())
    error(err, 0)
  end
  m:flush()
  return m.messages[1].value
end

-- producers.ngx around a stub ngx (spec/ngx/module_spec.lua has the full one): its produce
-- is the Kafka backend's, after its own checks.
local function ngx_stub()
  local dict = require("support.shared_dict").new()
  local S = { phase = "init_worker", timers = {} }
  _G.ngx = {
    ERR = 4, WARN = 5, INFO = 7, DEBUG = 8, log = function() end,
    shared = { producers = dict },
    worker = { pid = function() return 100 end, exiting = function() return false end },
    timer = { every = function(_, fn, ...) S.timers[#S.timers + 1] = { fn, ... } return true end,
              at = function() return true end },
    get_phase = function() return S.phase end,
    now = function() return os.time() end, update_time = function() end,
    sleep = function() end,
  }
  package.loaded["producers.ngx"] = nil
  S.kafka = require("producers.ngx")
  S.kafka.init{ config = MOCK, shared_dict = "producers", log_level = "error" }
  S.phase = "log"
  return S
end

local function ngx_done(S)
  S.phase = "exit_worker"
  S.kafka.exit()
  _G.ngx = nil
  package.loaded["producers.ngx"] = nil
end

local function via_ngx(t)
  local S = ngx_stub()
  local value
  local ok, err = pcall(S.kafka.produce, "edges", "k", t, { on_delivery = function(e, r) value = e or r.value end })
  if not ok then
    local q = S.kafka.producer().producer:queue_length()
    ngx_done(S)
    assert.equal(0, q)
    error(err, 0)
  end
  for _ = 1, 1000 do
    if value then break end
    S.phase = "timer"
    for _, timer in ipairs(S.timers) do timer[1](false, select(2, (table.unpack or unpack)(timer))) end
    require("system").sleep(0.01)
  end
  ngx_done(S)
  return value
end

local PATHS = {
  { "core.encode_value", function(t) return core.encode_value(t) end },
  { "kafka produce", via_kafka },
  { "memory produce", via_memory },
  { "producers.ngx produce", via_ngx },
}

--- Each path refuses t with msg, or (msg nil) writes the same bytes,
-- which Python reads as want (canonical form); returns those bytes.
local function every_path(t, msg, want)
  local bytes
  for _, path in ipairs(PATHS) do
    if msg then
      raises(msg, path[2], t)
    else
      local b = path[2](t)
      assert.equal(bytes or b, b, path[1])
      bytes = b
    end
  end
  if want then assert.same({ want }, python({ bytes })) end
  return bytes
end

-- A C function making a light userdata of any value's lua_topointer (the
-- identity the encoder remembers keys by), built once into the build folder.
local function lua_incdir()
  local cache = H.read(build .. "/CMakeCache.txt") or ""
  local dir = cache:match("\nLUA_INCDIR:PATH=([^\n]+)") or cache:match("\nLUA_INCLUDE_DIRS:INTERNAL=([^;\n]+)")
  if dir and dir ~= "" then return dir end
  if jit then return "/usr/include/luajit-2.1" end
  return "/usr/include/lua" .. _VERSION:match("%d+%.%d+")
end

local function address_of()
  local dir = build .. "/json-edges"
  local so = dir .. "/address_of.so"
  if not H.read(so) then
    os.execute("mkdir -p " .. H.shell_quote(dir))
    local f = assert(io.open(dir .. "/address_of.c", "w"))
    f:write([[
#include <lua.h>
static int address_of(lua_State *L)
{
    lua_pushlightuserdata(L, (void *)lua_topointer(L, 1));
    return 1;
}
int luaopen_address_of(lua_State *L)
{
    lua_pushcfunction(L, address_of);
    return 1;
}
]])
    f:close()
    local out, ok = H.sh(("%s gcc -O2 -fPIC -shared -I%s %s -o %s"):format(PLAIN, H.shell_quote(lua_incdir()),
      H.shell_quote(dir .. "/address_of.c"), H.shell_quote(so)))
    assert(ok, out)
  end
  return assert(package.loadlib(so, "luaopen_address_of"))()
end

describe("the builtin encoder", function()
  local m

  setup(function()
    m = producers.mock_cluster(1)
    kafka_p = producers.kafka.new{ bootstrap_servers = m:bootstraps(), log_level = "error",
      on_delivery = function(err, r) got[#got + 1] = err and ("error: " .. err) or r.value end }
  end)
  teardown(function()
    kafka_p:close()
    m:close()
  end)

  describe("table keys", function()
    it("refuses a light userdata key, even one at the address of a remembered string key", function()
      local at = address_of()
      local name = "user_id"
      for _ = 1, 3 do assert.equal('{"user_id":1}', core.encode_value({ user_id = 1 })) end
      local ud = at(name)
      assert.equal("userdata", type(ud))
      local msg = PREFIX .. "Cannot serialise userdata: table key must be a number or string"
      every_path({ [ud] = 2 }, msg)
      every_path({ user_id = 1, [ud] = 2 }, msg)
      every_path({ nested = { [ud] = 2 } }, msg)
      every_path({ [at({})] = 1 }, msg)                             -- any other address
      every_path({ user_id = 1 }, nil, '{"user_id":1}')            -- and the key still works
    end)

    it("refuses every key that is not a string or a number with lua-cjson's message", function()
      for _, case in ipairs({
        { true, "boolean" }, { {}, "table" }, { print, "function" }, { io.stdout, "userdata" },
        { coroutine.create(print), "thread" },
      }) do
        every_path({ [case[1]] = 1 }, PREFIX .. "Cannot serialise " .. case[2] .. ": table key must be a number or string")
      end
    end)

    it("refuses a light userdata value, other than the NULL one (null)", function()
      local at = address_of()
      every_path({ at("user_id") }, PREFIX .. "Cannot serialise userdata: type not supported")
      every_path({ v = at({}) }, PREFIX .. "Cannot serialise userdata: type not supported")
      every_path({ v = at(nil) }, nil, '{"v":null}')
    end)
  end)

  describe("member names", function()
    local function dup(name) return PREFIX .. 'Cannot serialise table: duplicate key "' .. name .. '" (a number key and a string key)' end

    it("refuses a number key and a string key written as the same name, naming it", function()
      every_path({ [1] = "a", ["1"] = "b" }, dup("1"))
      every_path({ [-7] = "a", ["-7"] = "b", x = 1 }, dup("-7"))
      every_path({ [1.5] = "a", ["1.5"] = "b" }, dup("1.5"))
      every_path({ [2.0] = "a", ["2"] = "b", y = 1 }, dup("2"))                 -- 2.0 is the key 2
      every_path({ [0.1 + 0.2] = "a", ["0.30000000000000004"] = "b" }, dup("0.30000000000000004"))
      every_path({ [1e300] = 1, ["1e+300"] = 2 }, dup("1e+300"))
      every_path({ [2 ^ 63] = 1, ["9.223372036854776e+18"] = 2 }, dup("9.223372036854776e+18"))
      every_path({ list = { [1] = "a", [3] = "c", ["3"] = "d" } }, dup("3"))   -- nested
      if math.type then
        every_path({ [9007199254740993] = 1, ["9007199254740993"] = 2 }, dup("9007199254740993"))
      end
    end)

    it("writes names that only look alike, and Python reads each once", function()
      every_path({ [1] = "a", ["01"] = "b", ["1.0"] = "c", [" 1"] = "d", ["1e0"] = "e", ["0x1"] = "f" }, nil,
        '{" 1":"d","01":"b","0x1":"f","1":"a","1.0":"c","1e0":"e"}')
      every_path({ [0] = "a", ["-0"] = "b", ["-0.0"] = "c" }, nil, '{"-0":"b","-0.0":"c","0":"a"}')
      every_path({ [1.5] = "a", ["1.50"] = "b", ["1.5\0"] = "c" }, nil, '{"1.5":"a","1.5\\u0000":"c","1.50":"b"}')
      every_path({ [100] = "a", ["1e2"] = "b" }, nil, '{"100":"a","1e2":"b"}')
      if math.type then                       -- 2^53 + 2 is the integer key 9007199254740994
        every_path({ [2 ^ 53 + 2] = "a", ["9007199254740994.0"] = "b" }, nil,
          '{"9007199254740994":"a","9007199254740994.0":"b"}')
      else                                    -- LuaJIT: a float, written as one
        every_path({ [2 ^ 53 + 2] = "a", ["9007199254740994.0"] = "b" }, dup("9007199254740994.0"))
      end
    end)

    it("are each read once by Python in 3000 generated tables mixing number and string keys", function()
      local seed = 4242
      local function rand(n)
        seed = seed * 16807 % 2147483647        -- exact in doubles: the same on every Lua
        return seed % n + 1
      end
      local NUMBERS = { 1, 2, 3, -1, 0, 10, 1.5, -0.25, 0.1 + 0.2, 1e300, 2 ^ 53, 2 ^ 63, 1e-7, 123.456, 1e16 }
      local function text(n)                  -- as the encoder writes it (alone: 1 would be an array)
        for name in core.encode_value({ [n] = 0, [""] = 0 }):gmatch('"([^"]+)":0') do return name end
      end
      local STRINGS = { "a", "id", "01", "1.0", "1e2", "-", "", "1 ", "-1.0" }
      for _, n in ipairs(NUMBERS) do STRINGS[#STRINGS + 1] = text(n) end
      local texts, dups = {}, 0
      for _ = 1, 3000 do
        local t, names, numbers = {}, {}, {}
        for _ = 1, rand(4) do
          local n = NUMBERS[rand(#NUMBERS)]
          t[n] = "n"
          numbers[text(n)] = true
        end
        for _ = 1, rand(4) do
          local s = STRINGS[rand(#STRINGS)]
          t[s] = "s"
          names[s] = true
        end
        local clash
        for s in pairs(names) do if numbers[s] then clash = clash or s end end
        local ok, out = pcall(core.encode_value, t)
        if clash then
          dups = dups + 1
          assert.is_false(ok, "a clash on " .. clash .. " written: " .. tostring(out))
          assert.truthy(out:find('duplicate key "', 1, true), out)
        else
          assert(ok, out)
          texts[#texts + 1] = out
        end
      end
      assert.truthy(dups > 300 and #texts > 300, dups .. " / " .. #texts)
      for i, v in ipairs(python(texts)) do
        assert.falsy(v:match("^dup ") or v:match("^bad "), texts[i] .. ": " .. v)
      end
    end)

    it("costs tables whose keys are all strings no second walk", function()
      -- (the measure is bench/'s; here: such a table is written as before)
      assert.equal('{"a":1}', core.encode_value({ a = 1 }))
      local t = { ["1"] = "a", ["2"] = "b" }
      assert.same({ '{"1":"a","2":"b"}' }, python({ core.encode_value(t) }))
    end)
  end)

  describe("headers", function()
    it("take no tables: a table value is refused, not encoded", function()
      raises("opts.headers: names and values must be strings, got table", kafka_p.produce, kafka_p, "edges", "k", "v",
        { headers = { h = { [1] = "a", ["1"] = "b" } } })
    end)
  end)
end)

-- Runs a Lua chunk in a child interpreter with the module on its paths:
-- prefix (a shell command's start: ulimit, environment) then the Lua.
local function child(prefix, code, wrapper)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  local out, ok, status = H.sh(("%s LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH=%s %s %s %s")
    :format(prefix, H.shell_quote(build .. "/?.so;;"), wrapper or "", LUA, path))
  os.remove(path)
  return out, ok, status
end

-- What the child runs first: its own VmSize and VmRSS (KiB), and a way to
-- limit its address space from where it stands (prlimit on its own pid).
local PROC = [[
local function status(field)
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match(field .. ":%s*(%d+)"))
end
local function limit_memory(more_kib)
  if os.getenv("ASAN_OPTIONS") then return end    -- allocations over max_allocation_size_mb fail instead
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("*l"):match("^(%d+)")
  f:close()
  local kib = status("VmSize") + more_kib
  assert(os.execute(("prlimit --pid %s --as=%d"):format(pid, kib * 1024)))
  print(("limit %d KiB"):format(kib))
end
]]

describe("the encoder's memory", function()
  it("out of memory: produce raises, nothing is queued, the producer and the encoder go on", function()
    local prefix = ASAN and "ASAN_OPTIONS=\"$ASAN_OPTIONS:allocator_may_return_null=1:max_allocation_size_mb=64\""
      or "MALLOC_ARENA_MAX=2"
    local out, ok = child(prefix, PROC .. [[
local producers = require("producers")
local core = require("producers.core")
local m = producers.mock_cluster(1)
local got = {}
local p = producers.kafka.new{ bootstrap_servers = m:bootstraps(), log_level = "warn",
  on_delivery = function(err, r) got[#got + 1] = err or r.value end }
assert(p:produce("oom", "k", { before = true }))
assert(p:flush(10))
local s = string.rep("\1", 8 * 2 ^ 20)        -- 48 MiB of JSON (\u0001)
local big = {}
for i = 1, 64 do big[i] = s end                 -- 3 GiB
limit_memory(200 * 1024)                        -- the buffer fails at 256 MiB
print("produce", pcall(p.produce, p, "oom", "k", big))
print("queued", p:queue_length())
print("encode_value", pcall(core.encode_value, big))
local mem = producers.memory.new()
print("memory", pcall(mem.produce, mem, "oom", "k", big))
big, s = nil, nil
collectgarbage()
assert(p:produce("oom", "k", { after = true, n = 2 }))
assert(p:flush(10))
print("delivered", got[1], got[2], #got)
print("encoded", core.encode_value({ a = { 1, 2 } }))
p:close()
m:close()
print("done")
]])
    assert(ok, out)
    -- the size that failed depends on the limit: 128 MiB under ASan, else about 256 MiB
    local size = out:match("produce\tfalse\t" .. PREFIX:gsub("%p", "%%%0") .. "not enough memory %(a buffer of (%d+) bytes%)\n")
    assert.truthy(size and tonumber(size) >= 64 * 2 ^ 20, out)
    local msg = PREFIX .. "not enough memory (a buffer of " .. size .. " bytes)"
    assert.truthy(out:find("queued\t0\n", 1, true), out)
    assert.truthy(out:find("encode_value\tfalse\t" .. msg .. "\n", 1, true), out)
    assert.truthy(out:find("memory\tfalse\t[^\n]*: " .. msg:gsub("%p", "%%%0") .. "\n"), out)
    assert.truthy(out:find('delivered\t{"before":true}\t', 1, true), out)
    local after = out:match('delivered\t{"before":true}\t([^\t]*)\t2\n')
    assert.truthy(after == '{"after":true,"n":2}' or after == '{"n":2,"after":true}', out)
    assert.truthy(out:find('encoded\t{"a":[1,2]}\n', 1, true), out)
    assert.truthy(out:find("done\n", 1, true), out)
  end)

  it("gives back a large buffer once smaller values follow", function()
    local prefix = ASAN and "ASAN_OPTIONS=\"$ASAN_OPTIONS:quarantine_size_mb=0:thread_local_quarantine_size_kb=0\"" or ""
    local out, ok = child(prefix, PROC .. [[
local producers = require("producers")
local core = require("producers.core")
local p = producers.kafka.new{ bootstrap_servers = "127.0.0.1:1", logger = function() end }
for i = 1, 100 do core.encode_value({ i = i, name = "small" }) end
collectgarbage(); collectgarbage()
local base = status("VmRSS")
do
  local t = { data = string.rep("x", 100 * 2 ^ 20) }        -- 100 MiB
  assert(#core.encode_value(t) > 100 * 2 ^ 20)
  local ok, _, name = p:produce("t", "k", t)                -- encoded, then over message.max.bytes
  assert(ok == nil and name == "MSG_SIZE_TOO_LARGE", name)
end
collectgarbage(); collectgarbage()
local held = status("VmRSS")
for i = 1, 100 do
  assert(p:produce("t", "k", { i = i, name = "small" }))
  core.encode_value({ i = i })
end
collectgarbage(); collectgarbage()
local after = status("VmRSS")
print(("rss base %d held %d after %d KiB"):format(base, held, after))
p:close(0)
]])
    assert(ok, out)
    local base, held, after = out:match("rss base (%d+) held (%d+) after (%d+) KiB")
    base, held, after = tonumber(base), tonumber(held), tonumber(after)
    assert.truthy(base, out)
    assert.truthy(held - base > 90 * 1024, "the large value's buffer was not held: " .. out)
    assert.truthy(after - base < 16 * 1024, "not given back: " .. out)
  end)

  it("lua-cjson (json = 'lua-cjson') exits the process when out of memory (docs/json.md)", function()
    if ASAN then return end                      -- (its strbuf calls exit: nothing of ours to check)
    local out, ok, status = child("MALLOC_ARENA_MAX=2", PROC .. [[
local core = require("producers.core")
local s = string.rep("\1", 8 * 2 ^ 20)
local big = {}
for i = 1, 64 do big[i] = s end
limit_memory(200 * 1024)
print("encoded", pcall(core.encode_value, big, "lua-cjson"))
]])
    if out:find("module 'cjson' not found", 1, true) then return end
    assert.is_false(ok, out)
    assert.equal(255, status)
    assert.truthy(out:find("Out of memory", 1, true), out)
    assert.falsy(out:find("encoded", 1, true), out)
  end)
end)

describe("valgrind #valgrind", function()
  it("finds no invalid access and no leak in the edge cases: refusals, a buffer grown and given back", function()
    local log = os.tmpname()
    local out, ok, code = child("", [[
local core = require("producers.core")
for round = 1, 3 do
  for _ = 1, 3 do core.encode_value({ user_id = 1 }) end
  assert(not pcall(core.encode_value, { [1] = "a", ["1"] = "b" }))
  assert(not pcall(core.encode_value, { [1.5] = "a", ["1.5"] = "b", x = { [2] = 1, ["2"] = 2 } }))
  assert(core.encode_value({ [1] = "a", ["01"] = "b" }))
  assert(#core.encode_value({ string.rep("\1", 2 ^ 20) }) > 6 * 2 ^ 20)     -- grows to 8 MiB
  assert(not pcall(core.encode_value, { string.rep("y", 3 * 2 ^ 20), print }))
  assert(core.encode_value({ n = round }) == '{"n":' .. round .. '}')     -- given back
end
print("valgrind edges done")
]], "valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect "
      .. "--suppressions=spec/support/valgrind.supp --error-exitcode=99 --log-file=" .. log .. " ")
    local report = H.read(log) or ""
    os.remove(log)
    assert.truthy(out:find("valgrind edges done", 1, true), out)
    assert.is_true(ok, ("valgrind exit %s\n%s\n%s"):format(tostring(code), out, report))
  end)
end)
