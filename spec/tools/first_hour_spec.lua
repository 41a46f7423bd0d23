-- A newcomer's first hour: the README's "Using it" and examples/produce.lua
-- name the address of the project's broker (scripts/kafka/broker.sh), and
-- both count failed messages, since flush is true once every report is
-- served, delivered or not. Run here on the mock cluster, once with a
-- topic that takes the messages and once with one that refuses them all.
local producers = require("producers")
local H = require("helpers")

local q = H.shell_quote
local _, build = H.dirs("build")
local lua = os.getenv("PRODUCERS_LUA") or "lua5.4"

-- The README's first ```lua block after "## Using it".
local function using_it()
  local readme = assert(H.read("README.md"))
  local section = assert(readme:match("\n## Using it\n(.-)\n## "), "README.md has no Using it section")
  return assert(section:match("```lua\n(.-)```"), "no lua block in Using it"), section
end

-- The single-node broker's PLAINTEXT address, from broker.sh's layout.
local function broker_address()
  local sh = assert(H.read("scripts/kafka/broker.sh"))
  local base = assert(sh:match("if %[%[ %$1 == 1 %]%]; then echo %$%(%((%d+) %+ PORT_OFFSET%)%)"))
  local plus = assert(sh:match("plain_port%(%) { echo %$%(%(%$%(port_base \"%$1\" \"%$2\"%) %+ (%d+)%)%); }"))
  return "127.0.0.1:" .. (tonumber(base) + tonumber(plus))
end

describe("a newcomer's first hour", function()
  local m
  before_each(function() m = producers.mock_cluster(1) end)
  after_each(function() m:close() end)

  it("the README and examples/produce.lua name the project's broker, how to start it and make a topic", function()
    local address = broker_address()
    assert.equal("127.0.0.1:19092", address)
    local code, section = using_it()
    assert.truthy(code:find('bootstrap_servers = "' .. address .. '"', 1, true), code)
    assert.truthy(section:find("scripts/kafka/broker.sh start", 1, true), section)
    assert.truthy(section:find("scripts/kafka/broker.sh create-topic", 1, true), section)
    local example = assert(H.read("examples/produce.lua"))
    assert.truthy(example:find('"' .. address .. '"', 1, true), "examples/produce.lua's default address")
    assert.truthy(example:find("create-topic", 1, true))
  end)

  -- the next Produce requests fail, not retriable: every message fails
  local function refuse_all()
    local errors = {}
    for i = 1, 20 do errors[i] = "TOPIC_AUTHORIZATION_FAILED" end
    m:push_request_errors(0, (table.unpack or unpack)(errors))
  end

  -- examples/produce.lua with BOOTSTRAP at the mock cluster: its output, success
  local function example(topic)
    return H.sh(("BOOTSTRAP=%s TOPIC=%s LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH=%s %s examples/produce.lua 2>&1")
      :format(q(m:bootstraps()), q(topic), q(build .. "/?.so;;"), lua))
  end

  it("examples/produce.lua delivers its 5 messages and says so", function()
    local topic = H.topic("first")
    m:create_topic(topic, 1, 1)
    local out, ok = example(topic)
    assert.is_true(ok, out)
    assert.truthy(out:find("\n5 delivered, 0 failed\n", 1, true), out)
  end)

  it("examples/produce.lua exits 1, counting them, when every message fails (flush is true all the same)", function()
    local topic = H.topic("refused")
    m:create_topic(topic, 1, 1)
    refuse_all()
    local out, ok = example(topic)
    assert.is_false(ok, out)
    assert.truthy(out:find("\n0 delivered, 5 failed\n", 1, true), out)
    assert.is_nil(out:find("flush:", 1, true), out)         -- flush returned true
  end)

  -- The README's block on the mock cluster, with print captured.
  local function run_readme(refused)
    local code = using_it():gsub('"127%.0%.0%.1:19092"', ("%q"):format(m:bootstraps()))
    for _, topic in ipairs({ "signups", "raw" }) do m:create_topic(topic, 1, 1) end
    if refused then refuse_all() end
    return H.run_lua(code)
  end

  it("the README's example delivers and prints nothing", function()
    local out, ok = run_readme()
    assert.is_true(ok, out)
    assert.is_nil(out:find("failed", 1, true), out)
  end)

  it("the README's example counts the failures when every message fails", function()
    local out, ok = run_readme(true)
    assert.is_true(ok, out)                 -- flush(10) is true: every report served
    local n = tonumber(out:match("%f[^\n%z](%d+) messages failed\n"))
    assert.is_true(n and n >= 3, out)       -- 4 produced, 3 of them without a callback of their own
  end)
end)
