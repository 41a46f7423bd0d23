-- The unknown-property hint's tie (issue #26, found by the mutation
-- check): of two properties equally near a misspelled name, the hint
-- names the first in librdkafka's list (rd_kafka_conf_properties_show),
-- which puts a property before its alias. 'sasl.mechanims' is one edit
-- from 'sasl.mechanisms' (a missing s) and one from its alias
-- 'sasl.mechanism' (m and s swapped), in librdkafka 2.0.2 and 2.8.0
-- alike: the hint is the property, not the alias.
local producers = require("producers")

describe("config's unknown-property hint", function()
  it("names the first of two equally near properties", function()
    local want = "config: unknown property 'sasl.mechanims' (did you mean 'sasl.mechanisms'?)"
    assert.same({ nil, want }, { producers.kafka.check{ bootstrap_servers = "b", config = { ["sasl.mechanims"] = "PLAIN" } } })
    assert.has_error(function()
      producers.kafka.new{ bootstrap_servers = "b", config = { ["sasl.mechanims"] = "PLAIN" } }
    end, want)
  end)
end)
