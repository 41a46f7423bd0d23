-- json = "lua-cjson" with a lua-cjson too old for it (issue #26, a
-- survivor of the mutation check): the builtin encoder's alternative
-- needs cjson.new() (lua-cjson 2.1 or later); without it new refuses
-- with a message that says so, not with "attempt to call a nil value".
-- In a child Lua, whose `cjson` is a stand-in without new.
local H = require("helpers")

describe("json = \"lua-cjson\" with a lua-cjson without cjson.new()", function()
  it("is refused by new, naming the version it needs", function()
    local out, ok = H.run_lua([[
      package.loaded.cjson = { encode = function() return "[]" end }
      local producers = require("producers")
      local ok, err = pcall(producers.kafka.new, { config = { ["test.mock.num.brokers"] = 1 }, json = "lua-cjson",
                                                    logger = function() end })
      print(tostring(ok) .. " | " .. tostring(err))
    ]], 30)
    assert.is_true(ok, out)
    assert.matches('^false | [^\n]*json = "lua%-cjson": lua%-cjson without cjson%.new%(%), need 2%.1 or later\n', out)
  end)
end)
