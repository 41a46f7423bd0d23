-- A librdkafka mock cluster for trying the nginx example by hand:
--   luajit examples/nginx/mock_cluster.lua [topic]
-- prints the bootstrap servers, keeps the cluster up until Enter (or EOF).
local producers = require("producers")
local topic = arg[1] or "events"
local m = producers.mock_cluster(1)
m:create_topic(topic, 1, 1)
io.stdout:write(m:bootstraps(), "\n")
io.stdout:flush()
io.stderr:write(("mock cluster up, topic '%s'; Enter stops it\n"):format(topic))
io.read("*l")
m:close()
