-- Standard input to Kafka, one message a line, stopping cleanly on
-- SIGINT or SIGTERM: no message that produce accepted is lost when the
-- broker is reachable (docs/signals.md).
--
--   lua5.4 examples/signals.lua BROKERS TOPIC < lines
--
-- Prints "accepted N, delivered N, failed N" on stderr at the end; exits
-- 130 after SIGINT, 143 after SIGTERM (as a shell reports a program the
-- signal ended), else 0, or 1 when a message failed.
local producers = require("producers")
local signals = producers.signals

local brokers, topic = arg[1], arg[2]
assert(brokers and topic, "usage: signals.lua BROKERS TOPIC < lines")

-- From here on SIGINT and SIGTERM only set a flag: signals.caught()
-- says which came; a read, poll or flush under way returns early.
signals.trap{ "INT", "TERM" }

local delivered, failed = 0, 0
local p = producers.kafka.new{
  bootstrap_servers = brokers,
  on_delivery = function(err)
    if err then failed = failed + 1 else delivered = delivered + 1 end
  end,
}

local accepted = 0
while not signals.caught() do
  local line = io.read("*l")      -- nil at the end, or when a signal interrupts the read
  if not line then break end
  local ok, _, name = p:produce(topic, nil, line)
  -- the local queue is full: serve reports to make room (docs/errors.md);
  -- a signal makes poll return at once
  while not ok and name == "_QUEUE_FULL" and not signals.caught() do
    p:poll(0.1)
    ok, _, name = p:produce(topic, nil, line)
  end
  if ok then
    accepted = accepted + 1
  elseif name ~= "_QUEUE_FULL" then
    failed = failed + 1           -- refused: never queued
  end
end

-- Stop: wait up to 10 s for the reports of what was accepted (a second
-- signal cuts the wait short), then free the producer. What is still
-- queued then is purged and reported failed, never dropped silently. A
-- callback's error comes out of close once it has closed.
local ok, err = pcall(p.close, p, 10)
if not ok then io.stderr:write("close: ", tostring(err), "\n") end
io.stderr:write(("accepted %d, delivered %d, failed %d\n"):format(accepted, delivered, failed))

local name, number = signals.caught()
if name then os.exit(128 + number, true) end
os.exit(failed == 0 and 0 or 1, true)
