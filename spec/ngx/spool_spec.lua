-- producers.ngx's spool option (lua/producers/ngx/spool.lua, issue #22
-- I17) with a stubbed ngx: each worker spools into its own folder
-- <dir>/<pid>-<start ms>; the adoption pass tries every other worker
-- folder once through p:spool_adopt, tries a held one (SPOOL_LOCKED)
-- again next time, logs any other failure once; the option's timer.
-- Real nginx and real Kafka: spec/integration/62-nginx_spool_spec.lua.
local stub = require("support.ngx_stub")
local H = require("helpers")

local MOCK = { ["test.mock.num.brokers"] = 1 }

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. H.shell_quote(d)))
  return d
end

describe("producers.ngx's spool (stubbed ngx)", function()
  local S, kafka, base
  before_each(function()
    S = stub()
    S.t = 1700000000.123
    kafka = require("producers.ngx")
    base = tmpdir()
  end)
  after_each(function()
    stub.leave(S, kafka.exit)
    os.execute("rm -rf " .. H.shell_quote(base))
  end)

  it("spools each worker's messages into <dir>/<pid>-<start ms>", function()
    local inst = kafka.init{ config = MOCK, spool = { dir = base .. "/" } }
    S.phase = "log"
    assert.is_true(kafka.produce("t", "k", "v"))
    local own = base .. "/100-1700000000123"
    assert.equal(own, inst.spool_base .. "/" .. inst.spool_own)
    assert.truthy(H.read(own .. "/SPOOL"), "no spool in " .. own)
    assert.is_true(inst.producer:metrics().spool.records >= 0)
    -- adoption: once now (a zero-delay timer), then every spool_adopt_interval
    assert.equal(1, #S.zero)
    assert.equal(2, #S.timers)            -- the report timer and the adoption timer
  end)

  it("refuses a spool_adopt_interval that is not a number of seconds > 0", function()
    assert.has_error(function() kafka.init{ config = MOCK, spool_adopt_interval = 0 } end,
      "producers.ngx: option 'spool_adopt_interval' must be a number of seconds > 0, got 0")
    assert.has_error(function() kafka.init{ config = MOCK, spool_adopt_interval = "5" } end,
      "producers.ngx: option 'spool_adopt_interval' must be a number, got string")
  end)

  it("makes no folder and no adoption timer without the option", function()
    local inst = kafka.init{ config = MOCK }
    assert.is_nil(inst.spool_base)
    assert.equal(0, #S.zero)
    assert.equal(1, #S.timers)
  end)

  describe("the adoption pass", function()
    local spool
    before_each(function() spool = require("producers.ngx.spool") end)   -- with the stub's ngx
    local function worker(answers)
      local tried = {}
      local self = { pid = 100, spool_base = base, spool_own = "100-5", spool_adopted = {}, settings = {} }
      self.producer = {
        spool_adopt = function(_, path)
          tried[#tried + 1] = path
          local a = answers[path:match("[^/]+$")]
          if a == "raise" then error("spool_adopt: boom") end
          if a == true then return true end
          return nil, "spool " .. path .. " is in use by pid 7", a
        end,
      }
      return self, tried
    end

    it("tries every other worker's folder, adopts a free one once, a held one again next time", function()
      -- 500-<now>: a worker that has just made its folder and not locked it yet
      local just = ("500-%d"):format(math.floor(S.t * 1000) - 1000)
      for _, name in ipairs({ "100-5", "200-6", "300-7", "not-a-worker", "400-8", just }) do
        assert(os.execute("mkdir " .. H.shell_quote(base .. "/" .. name)))
      end
      assert(io.open(base .. "/LOCK", "w")):close()
      local self, tried = worker({ ["200-6"] = true, ["300-7"] = "SPOOL_LOCKED", ["400-8"] = "SPOOL_IO" })
      spool.adopt_all(self)
      table.sort(tried)
      assert.same({ base .. "/200-6", base .. "/300-7", base .. "/400-8" }, tried)
      assert.truthy(S.find("worker 100 adopted the spool " .. base .. "/200-6"))
      assert.equal(1, S.count("cannot adopt " .. base .. "/400-8"))
      -- next pass: only the held one again
      tried[1], tried[2], tried[3] = nil, nil, nil
      spool.adopt_all(self)
      assert.same({ base .. "/300-7" }, tried)
      assert.equal(1, S.count("cannot adopt"))
    end)

    it("logs a raising spool_adopt once and goes on with the other folders", function()
      for _, name in ipairs({ "200-6", "300-7" }) do
        assert(os.execute("mkdir " .. H.shell_quote(base .. "/" .. name)))
      end
      local self, tried = worker({ ["200-6"] = "raise", ["300-7"] = true })
      spool.adopt_all(self)
      assert.equal(2, #tried)
      assert.truthy(S.find("spool_adopt: boom"))
      assert.truthy(S.find("adopted the spool " .. base .. "/300-7"))
    end)

    it("logs a folder it cannot list, and does nothing once closed", function()
      local self, tried = worker({})
      self.spool_base = base .. "/missing"
      spool.adopt_all(self)
      assert.truthy(S.find("cannot list " .. base .. "/missing"))
      self.closed = true
      self.spool_base = base
      assert(os.execute("mkdir " .. H.shell_quote(base .. "/200-6")))
      spool.adopt_all(self)
      assert.same({}, tried)
    end)
  end)
end)
