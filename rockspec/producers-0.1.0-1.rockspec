-- luarocks make rockspec/producers-0.1.0-1.rockspec --deps-mode=none
-- builds with CMake from this source tree and installs producers.core and
-- producers/*.lua into the rocks tree, for the Lua luarocks runs for
-- (--lua-version 5.1 for LuaJIT and 5.1).
rockspec_format = "3.0"
package = "producers"
version = "0.1.0-1"
source = {
  url = "git+file:///producers",   -- a local checkout; `luarocks make` builds the tree it runs in
  tag = "v0.1.0",
}
description = {
  summary = "A fast, safe Kafka producer for Lua, in C over librdkafka",
  detailed = [[
Producer objects take Lua tables (sent as JSON), strings (raw bytes) or nil
(tombstones), and call Lua delivery-report functions for every message.
Backends share one interface: Kafka (librdkafka) and an in-memory one for
tests.]],
  license = "MIT",
  labels = { "kafka", "librdkafka", "producer" },
}
dependencies = {
  "lua >= 5.1, < 5.5",
  "lua-cjson >= 2.1",
}
external_dependencies = {
  RDKAFKA = {
    header = "librdkafka/rdkafka.h",
    library = "rdkafka",
  },
}
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    PRODUCERS_INSTALL_CMOD = "$(LIBDIR)",
    PRODUCERS_INSTALL_LMOD = "$(LUADIR)",
    PRODUCERS_EMBEDDING = "OFF",
    PRODUCERS_TESTS = "OFF",
    PRODUCERS_BENCH = "OFF",
  },
}
