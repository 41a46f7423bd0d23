-- The benchmark's commands run from a clean checkout (a quick run, few
-- messages): bench/run.sh fills every row of the README's table, the
-- memory, latency and large-value sections, and stops the mock cluster it
-- starts; bench/nginx/run.sh measures nginx's worker.
-- Numbers are not checked here: the benchmark is not a timed test.
local H = require("helpers")

local lua = os.getenv("PRODUCERS_LUA") or "lua5.4"
local sanitized = (os.getenv("LD_PRELOAD") or ""):find("asan") ~= nil
-- once, with the plain Lua 5.4 build (the benchmark builds the rest)
local describe_once = (lua == "lua5.4" and not sanitized) and describe or pending

local _, build = H.dirs("build")
local env = ("LIB_BUILD_DIR=%s LUAJIT_BUILD_DIR=%s BENCH_BUILD_DIR=%s"):format(
  H.shell_quote(build), H.shell_quote(build .. "/bench-luajit"), H.shell_quote(build .. "/bench-standalone"))

-- The table row that starts with label, or nil.
local function row(text, label)
  for line in text:gmatch("[^\n]+") do
    if line:sub(1, #label + 2) == "| " .. label then return line end
  end
end

-- The mock cluster processes this run started and left running: those
-- whose environment carries the run's tag (another benchmark running
-- beside the specs starts mock clusters of its own).
local TAG = ("PRODUCERS_BENCH_SPEC=%d"):format(math.random(1, 1e9))
local function mock_clusters_left()
  local out = H.sh("for p in $(pgrep -f prd_bench_mock_cluster); do tr '\\0' '\\n' </proc/$p/environ 2>/dev/null"
    .. " | grep -qx " .. TAG .. " && echo $p; done; true")
  local _, n = out:gsub("%d+", "")
  return n
end

describe_once("the benchmark #bench", function()
  it("bench/run.sh fills every row of its table and stops its broker", function()
    local results = os.tmpname()
    local out, ok = H.sh(("%s %s bench/run.sh -n 20000 -R 1 -M 40000 -l 5000 -L 4 -o %s"):format(
      TAG, env, H.shell_quote(results)))
    local text = assert(H.read(results))
    os.remove(results)
    assert.is_true(ok, out)
    for _, label in ipairs{ "(a) librdkafka C", "(n) naive librdkafka C",
                            "(b) producers (Lua 5.4)", "(c) producers (Lua 5.4)",
                            "(b) producers (LuaJIT)", "(c) producers (LuaJIT)", "(d) Python" } do
      local line = row(text, label)
      assert.is_truthy(line, label .. " has no row:\n" .. text)
      assert.is_truthy(line:find("| 20,000 / 20,000 |", 1, true), line)
    end
    for _, label in ipairs{ "(b)/(a), Lua 5.4", "(c)/(a), Lua 5.4", "(b)/(d), Lua 5.4",
                            "(b)/(a), LuaJIT", "(c)/(a), LuaJIT", "(b)/(d), LuaJIT",
                            "(b)/(n), Lua 5.4", "(b)/(n), LuaJIT" } do
      assert.matches("^| [^|]+ | %d+%.%d%d | %d+%.%d%d | %d+%.%d%d |$", row(text, label))
    end
    -- memory: runs of 40,000 messages, peak RSS at 20,000 and at the end
    assert.truthy(text:find("| at 40,000 (MiB) |", 1, true), text)
    for _, queue in ipairs{ "100,000", "10,000" } do
      assert.matches("^| " .. queue .. " | 1 | %d+%.%d | %d+%.%d | [+-]%d+%.%d%% | [%d,]+ |$",
                     row(text, queue .. " | 1"))
    end
    local latency = row(text, "script: monotonic clock")
    assert.is_truthy(latency, text)
    local _, figures = latency:gsub("| %d+%.%d%d ", "")
    assert.equal(4, figures, latency)                       -- p50, p99, p99.9, max
    -- large values: 4 MB of each size, 100 B to 256 KiB
    for _, size in ipairs{ "100", "1,024", "262,144" } do
      assert.matches("^| " .. size .. " | [%d,]+ | %d+%.%d%d | [%d,]+ |$", row(text, size .. " |"))
    end
    assert.equal(0, mock_clusters_left())
  end)

  it("bench/profile.sh splits (b)'s main thread into phases that add up to its total", function()
    local out, ok = H.sh(TAG .. " bench/profile.sh -n 2000 -r 1 -V 5.4")
    assert.is_true(ok, out)
    local line = row(out, "this.5.4.1")
    assert.is_truthy(line, out)
    local cells = {}
    for cell in line:gmatch("| ([%d,%-]+) ") do cells[#cells + 1] = tonumber((cell:gsub(",", ""))) end
    assert.equal(9, #cells, line)   -- total, then script .. other
    local sum = 0
    for i = 2, 9 do sum = sum + cells[i] end
    assert.is_true(math.abs(sum - cells[1]) <= 8, line)    -- each phase rounded
    for i = 2, 8 do assert.is_true(cells[i] > 0, line) end  -- every phase seen
    assert.equal(0, mock_clusters_left())
  end)

  it("bench/nginx/run.sh measures the worker's CPU per message", function()
    local results = os.tmpname()
    local out, ok = H.sh(("%s bench/nginx/run.sh -q -d 1 -o %s"):format(env, H.shell_quote(results)))
    local text = assert(H.read(results))
    os.remove(results)
    assert.is_true(ok, out)
    local line = row(text, "/produce100")
    assert.is_truthy(line, text)
    -- produced and delivered the same number of messages, and a CPU figure
    local produced, delivered = line:match("| on | [%d,]+ | [%d,]+ | ([%d,]+) | ([%d,]+) |")
    assert.is_truthy(produced, line)
    assert.equal(produced, delivered)
    assert.matches("| %d+%.%d+ | %d+%.%d+ | %d+%.%d+ |$", line)
  end)
end)
