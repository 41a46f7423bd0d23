-- scripts/check-layout.sh: the C files' layout rules (README "Layout"):
-- src/core/ includes no transport (no kafka/ header, no librdkafka) and
-- the #include "..." graph between files has no cycle. Checked on src/,
-- and on copies of it broken on purpose, which it must refuse.
local H = require("helpers")

-- A copy of src/ in a temporary folder, with line added after the first
-- line of file that matches after; returns the folder.
local function broken_copy(file, after, line)
  local dir = H.sh("mktemp -d"):gsub("%s+$", "")
  assert(select(2, H.sh(("cp -r src %s/src"):format(dir))))
  local path = ("%s/src/%s"):format(dir, file)
  local text = assert(H.read(path))
  local at = assert(text:find(after, 1, true), after)
  local eol = text:find("\n", at, true)
  local f = assert(io.open(path, "w"))
  f:write(text:sub(1, eol), line, "\n", text:sub(eol + 1))
  f:close()
  return dir
end

-- Without the sanitizer's preload (the ASan leg's environment): the
-- script's tools are not the library, and LeakSanitizer's reports on
-- their exit would be taken for theirs.
local function check(dir)
  return H.sh("env -u LD_PRELOAD scripts/check-layout.sh " .. (dir and H.shell_quote(dir .. "/src") or ""))
end

describe("scripts/check-layout.sh", function()
  it("passes on src/", function()
    local out, ok = check()
    assert.is_true(ok, out)
    assert.equal("", out)
  end)

  it("refuses a librdkafka header included from src/core/", function()
    local dir = broken_copy("core/log.c", '#include "core/call.h"', "#include <librdkafka/rdkafka.h>")
    local out, ok = check(dir)
    H.sh("rm -rf " .. H.shell_quote(dir))
    assert.is_false(ok)
    assert.matches("src/core includes a transport:\ncore/log.c:%d+:#include <librdkafka/rdkafka.h>", out)
  end)

  it("refuses a kafka/ header included from src/core/, a cycle too", function()
    local dir = broken_copy("core/error.c", '#include "core/error.h"', '#include "kafka/errors.h"')
    local out, ok = check(dir)
    H.sh("rm -rf " .. H.shell_quote(dir))
    assert.is_false(ok)
    assert.matches('core/error.c:%d+:#include "kafka/errors.h"', out)
    assert.matches("the #include graph has a cycle", out, 1, true)
  end)

  it("refuses a cycle between two files of one folder", function()
    local dir = broken_copy("kafka/report.c", '#include "kafka/report.h"', '#include "kafka/producer.h"')
    local out, ok = check(dir)
    H.sh("rm -rf " .. H.shell_quote(dir))
    assert.is_false(ok)
    assert.matches("the #include graph has a cycle", out, 1, true)
    assert.matches("kafka/producer\n", out, 1, true)
    assert.not_matches("src/core includes a transport", out, 1, true)
  end)
end)
