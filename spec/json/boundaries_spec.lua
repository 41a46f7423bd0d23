-- The builtin encoder's doubles at the edge between 16 and 17 digits
-- (issue #26, a survivor of the mutation check): 10^16 is the one double
-- whose shortest digits come out as 17 with sixteen zeros after the
-- first (written 1e+16, as Python and lua-cjson write it); its
-- neighbours on both sides too. spec/json/floats_spec.lua checks
-- generated doubles against Python's repr.
local core = require("producers.core")

describe("builtin JSON encoder at 10^16", function()
  it("writes 1e16 and its neighbours as Python's repr does", function()
    assert.equal("[1e+16]", core.encode_value({ 1e16 }))
    assert.equal("[1e+17]", core.encode_value({ 1e17 }))
    assert.equal("[1.0000000000000002e+16]", core.encode_value({ 1e16 + 2 }))
    assert.equal("[1.5e+16]", core.encode_value({ 1.5e16 }))
    assert.equal("[1.2345678901234568e+17]", core.encode_value({ 1.2345678901234568e17 }))
    assert.equal("[-1e+16]", core.encode_value({ -1e16 }))
  end)
end)
