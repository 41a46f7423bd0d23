-- scripts/mutate.sh (the mutation check, docs/testing.md "Mutation
-- check") on two fixed mutants, in a temporary work folder: one the specs
-- must kill (memory.lua's queue limit off by one: spec/memory/backend_spec.lua fails) and one
-- listed as equivalent in scripts/mutate/known.txt (reported with its
-- reason, not run). The report's rows say so, and the checkout's tracked
-- files are the same before and after: the script mutates a copy only
-- (untracked files are left out: specs running beside this one make
-- their own).
local H = require("helpers")

local lua = os.getenv("PRODUCERS_LUA") or "lua5.4"
local sanitized = (os.getenv("LD_PRELOAD") or ""):find("asan") ~= nil
-- once, with the plain Lua 5.4 build (the script builds its own)
local describe_once = (lua == "lua5.4" and not sanitized) and describe or pending

-- by file name, operator and hash: found wherever the file is now
local KILLED = "memory.lua:rel:98c7e5d5"
local EQUIVALENT = "stats.c:rel:5dae80c3"

describe_once("scripts/mutate.sh", function()
  it("kills a mutant the specs catch, reports an equivalent one with its reason, leaves the checkout as it was", function()
    local work = H.sh("mktemp -d"):gsub("%s+$", "")
    local status = H.sh("git status --porcelain --untracked-files=no")
    local memory = H.read("lua/producers/memory.lua")
    local out, ok = H.sh(("scripts/mutate.sh --no-baseline --work %s/w --report %s/r.md --id %s --id %s")
      :format(work, work, KILLED, EQUIVALENT))
    local report = H.read(work .. "/r.md") or ""
    H.sh("rm -rf " .. work)
    assert.is_true(ok, out)
    -- ids by operator and hash (the line's text): they hold when a file
    -- moves to another folder or lines move within it
    assert.matches("| `lua/producers/[%w_/]*memory%.lua:%d+:rel:98c7e5d5` | lua/producers/[%w_/]*memory%.lua:%d+ "
      .. "| `>=` %-> `>` %(col 12%) | killed | memory/backend_spec%.lua: ", report)
    assert.matches("| `src/[%w_/]*stats%.c:%d+:rel:5dae80c3` | src/[%w_/]*stats%.c:%d+ | `<` %-> `<=` %(col 22%) "
      .. "| equivalent | by_id: the line runs only under", report)
    assert.matches("**Kill rate: 100.0%** of non-equivalent mutants (1 killed, 0 survived; 1 known equivalent", report, 1, true)
    assert.equals(status, (H.sh("git status --porcelain --untracked-files=no")))
    assert.equals(memory, H.read("lua/producers/memory.lua"))
  end)
end)
