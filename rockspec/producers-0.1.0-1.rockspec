-- The README's commands (Debian 12's luarocks defaults to Lua 5.1, so
-- name the version), from a checkout:
--   luarocks --lua-version 5.4 make rockspec/producers-0.1.0-1.rockspec
--   luarocks --lua-version 5.1 make rockspec/producers-0.1.0-1.rockspec LUA_INCDIR=/usr/include/luajit-2.1
--   luarocks --lua-version 5.4 pack producers      (a binary rock of what make installed)
-- CMake builds in build.luarocks/; every setting that depends on the Lua
-- or the librdkafka chosen is passed again, so a build.luarocks/ left by
-- another run cannot keep the old ones. RDKAFKA_DIR=... (or RDKAFKA_INCDIR
-- and RDKAFKA_LIBDIR) picks another librdkafka; the module is linked
-- with a run path to it. CMake's install puts producers-cat in the rock's
-- bin/, which luarocks wraps into the tree's bin/ for this Lua.
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
  "lua >= 5.1, < 5.5",          -- JSON is built in; lua-cjson only for json = "lua-cjson"
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
    PRODUCERS_LUA = "",            -- read from LUA_INCDIR's headers, never a cached one
    PRODUCERS_RDKAFKA_INCDIR = "$(RDKAFKA_INCDIR)",
    PRODUCERS_RDKAFKA_LIBDIR = "$(RDKAFKA_LIBDIR)",
    PRODUCERS_INSTALL_CMOD = "$(LIBDIR)",
    PRODUCERS_INSTALL_LMOD = "$(LUADIR)",
    PRODUCERS_EMBEDDING = "OFF",
    PRODUCERS_TESTS = "OFF",
    PRODUCERS_BENCH = "OFF",
    PRODUCERS_INSTALL_CAT = "ON",  -- bin/producers-cat (docs/producers-cat.md)
  },
}
