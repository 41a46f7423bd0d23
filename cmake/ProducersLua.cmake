# Picks the Lua headers for PRODUCERS_LUA and defines:
#   producers_lua_headers  interface target: include dirs (+ compat-5.3's,
#                          for 5.1, 5.2 and LuaJIT)
#   PRODUCERS_COMPAT_SOURCES  compat-5.3.c for those, else empty
#   LUA_ABI                5.1 .. 5.4, the install folder name
#   LUA_INTERP             the interpreter the specs run with
# Modules do not link liblua: the host program provides its symbols.
#
# PRODUCERS_LUA unset: read from LUA_INCDIR's headers when given (as
# luarocks does), else 5.4.
if(NOT PRODUCERS_LUA)
  if(LUA_INCDIR AND EXISTS ${LUA_INCDIR}/luajit.h)
    set(PRODUCERS_LUA luajit)
  elseif(LUA_INCDIR AND EXISTS ${LUA_INCDIR}/lua.h)
    file(STRINGS ${LUA_INCDIR}/lua.h vnum REGEX "^#define LUA_VERSION_NUM")
    string(REGEX REPLACE ".*([0-9])0([0-9]).*" "\\1.\\2" PRODUCERS_LUA "${vnum}")
  else()
    set(PRODUCERS_LUA 5.4)
  endif()
  message(STATUS "producers: building for Lua ${PRODUCERS_LUA}")
endif()
if(PRODUCERS_LUA STREQUAL "luajit")
  set(LUA_ABI 5.1)
  set(LUA_INTERP luajit)
  set(_lua_pc luajit)
elseif(PRODUCERS_LUA MATCHES "^5\\.[1-4]$")
  set(LUA_ABI ${PRODUCERS_LUA})
  set(LUA_INTERP lua${PRODUCERS_LUA})
  set(_lua_pc lua${PRODUCERS_LUA})
else()
  message(FATAL_ERROR "PRODUCERS_LUA must be 5.1, 5.2, 5.3, 5.4 or luajit, not '${PRODUCERS_LUA}'")
endif()

if(NOT LUA_INCDIR)
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(LUA REQUIRED ${_lua_pc})
  set(LUA_INCDIR ${LUA_INCLUDE_DIRS})
endif()

add_library(producers_lua_headers INTERFACE)
target_include_directories(producers_lua_headers INTERFACE ${LUA_INCDIR})
if(NOT LUA_ABI STREQUAL "5.3" AND NOT LUA_ABI STREQUAL "5.4")
  # lua-compat-5.3 brings the 5.3 C API to 5.1, 5.2 and LuaJIT.
  find_path(COMPAT53_INCDIR compat-5.3.h
    HINTS ${LUA_INCDIR} /usr/include/lua${LUA_ABI} /usr/include/lua5.1)
  if(NOT COMPAT53_INCDIR)
    message(FATAL_ERROR "compat-5.3.h not found: install lua-compat53-dev")
  endif()
  target_include_directories(producers_lua_headers INTERFACE ${COMPAT53_INCDIR})
  target_compile_definitions(producers_lua_headers INTERFACE COMPAT53_PREFIX=prd_compat53)
  # Its source, compiled once into producers_objects, symbols hidden.
  set(PRODUCERS_COMPAT_SOURCES ${COMPAT53_INCDIR}/compat-5.3.c)
endif()
