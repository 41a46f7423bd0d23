-- nginx from a checkout in a folder only its owner may enter (root's home
-- is mode 700 on Debian; so is what mktemp -d makes). A root master runs
-- its workers as nobody, who cannot read such a checkout; the tests and
-- the benchmark run them as the invoking user (spec/support/nginx.lua,
-- bench/nginx/run.sh). The repository is copied, without its builds and
-- .git, into such a folder with the LuaJIT build's core.so, and from
-- there run: examples/nginx without its init_by_lua (each worker loads
-- the library itself), spec/ngx/nginx_spec.lua whole, and bench/nginx/run.sh.
-- As root, under the LuaJIT suite only (a master of another user runs its
-- workers as that user: nothing to check).
local producers = require("producers")
local cjson = require("cjson")
local H = require("helpers")
local N = require("support.nginx")

local sh, q, read = H.sh, H.shell_quote, H.read
local lua = os.getenv("PRODUCERS_LUA") or "lua5.4"
local as_root = sh("id -u"):match("^0\n?$") ~= nil
local name = "nginx from a checkout under a folder only root may enter #nginx"
local describe_here = describe
if lua ~= "luajit" then
  describe_here, name = pending, name .. ": the LuaJIT suite runs it"
elseif not as_root then
  describe_here, name = pending, name .. ": only a root master runs its workers as another user"
end

describe_here(name, function()
  local root, build = H.dirs("build-luajit")
  local private, checkout, jit_build

  setup(function()
    private = sh("mktemp -d"):match("[^\n]+")
    assert.equal("700", sh("stat -c %a " .. q(private)):match("%d+"))
    checkout, jit_build = private .. "/checkout", private .. "/checkout/build-luajit"
    local out, ok = sh(("mkdir -p %s/producers && tar -C %s --exclude='./build*' --exclude=./.git -cf - . "
      .. "| tar -C %s -xf - && cp %s/producers/core.so %s/producers/ 2>&1")
      :format(q(jit_build), q(root), q(checkout), q(build), q(jit_build)))
    assert(ok, out)
    -- what the workers could not do before: nobody cannot enter the folder
    assert.matches("Permission denied", (sh("su nobody -s /bin/sh -c " .. q("ls " .. q(checkout)) .. " 2>&1")))
  end)

  teardown(function()
    if private then sh("rm -rf " .. q(private)) end
  end)

  it("runs examples/nginx whose workers load the library themselves (no init_by_lua)", function()
    local m = producers.mock_cluster(1)
    local topic = H.topic("private")
    m:create_topic(topic, 1, 1)
    local n
    finally(function() N.stop(n); m:close() end)
    n = N.start(m:bootstraps(), function(n)
      local text = assert(read(checkout .. "/examples/nginx/nginx.conf"))
      local vars = { PRODUCERS_ROOT = checkout, PRODUCERS_BUILD_DIR = jit_build, PORT = tostring(n.port) }
      text = text:gsub("%${([%w_]+)}", vars)
      text = N.replace_once(text, text:match("init_by_lua_block %b{}"), "")  -- the master loads nothing
      N.write(n.conf, text)
    end, function(n)
      local code = sh(("curl -s -o /dev/null -w '%%{http_code}' --max-time 2 %s/events"):format(n.url))
      return code == "405"
    end)
    local body = sh(("curl -s -X POST --data-binary '{\"a\":1}' '%s/events?topic=%s&key=k&wait=1'")
      :format(n.url, topic))
    local ok, r = pcall(cjson.decode, body)
    assert.is_true(ok and r.offset == 0, body .. n.log())
    assert.is_nil(n.log():find("not found", 1, true), n.log())
  end)

  it("passes spec/ngx/nginx_spec.lua (reload, quit, a full queue, a bad option) from there", function()
    local out, ok = sh(("cd %s && PRODUCERS_LUA=luajit PRODUCERS_BUILD_DIR=%s busted --lua=luajit -o utfTerminal "
      .. "spec/ngx/nginx_spec.lua 2>&1"):format(q(checkout), q(jit_build)))
    assert.is_true(ok, out)
    local passed = tonumber(out:match("(%d+) successe?s? / 0 failures / 0 errors / 0 pending"))
    assert.is_true(passed and passed >= 3, out)
  end)

  it("runs bench/nginx/run.sh from there", function()
    local results = private .. "/results.md"
    local out, ok = sh(("cd %s && LUAJIT_BUILD_DIR=%s BENCH_BUILD_DIR=%s bench/nginx/run.sh -q -d 1 -o %s 2>&1")
      :format(q(checkout), q(jit_build), q(private .. "/bench-build"), q(results)))
    assert.is_true(ok, out)
    local text = assert(read(results), out)
    local delivered = text:match("\n| /produce100[^|]*| on | [%d,]+ | [%d,]+ | [%d,]+ | ([%d,]+) |")
    assert.is_truthy(delivered, text)
    assert.is_true(tonumber((delivered:gsub(",", ""))) > 0, text)
  end)
end)
