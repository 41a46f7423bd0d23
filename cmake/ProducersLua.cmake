# Picks the Lua headers for PRODUCERS_LUA and defines:
#   producers_lua_headers  interface target: include dirs (+ compat-5.3's,
#                          for 5.1, 5.2 and LuaJIT)
#   PRODUCERS_COMPAT_SOURCES  compat-5.3.c for those, else empty
#   LUA_ABI                5.1 .. 5.4, the install folder name
#   LUA_INTERP             the interpreter the specs run with
#   PRODUCERS_NAME         lua5.4-producers ... lua5.1-producers, luajit-producers:
#                          the embedding library's, pkg-config's and CMake's name
#   PRODUCERS_LUA_VERSION_NUM  501 .. 504, LUA_VERSION_NUM of those headers
#   PRODUCERS_LUA_PC       pkg-config's name for that Lua (lua5.4, luajit),
#                          empty when pkg-config does not know it
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

find_package(PkgConfig REQUIRED)
if(NOT LUA_INCDIR)
  pkg_check_modules(LUA REQUIRED ${_lua_pc})
  set(LUA_INCDIR ${LUA_INCLUDE_DIRS})
  set(PRODUCERS_LUA_PC ${_lua_pc})
else()
  # pkg-config's Lua only if it is these headers
  pkg_check_modules(LUA QUIET ${_lua_pc})
  set(PRODUCERS_LUA_PC "")
  get_filename_component(_incdir "${LUA_INCDIR}" REALPATH)
  foreach(dir ${LUA_INCLUDE_DIRS})
    get_filename_component(dir "${dir}" REALPATH)
    if(dir STREQUAL _incdir)
      set(PRODUCERS_LUA_PC ${_lua_pc})
    endif()
  endforeach()
endif()
set(PRODUCERS_NAME ${_lua_pc}-producers)
string(REPLACE "." "0" PRODUCERS_LUA_VERSION_NUM ${LUA_ABI})
set(PRODUCERS_LUAJIT_DEFINE "")
if(PRODUCERS_LUA STREQUAL "luajit")
  set(PRODUCERS_LUAJIT_DEFINE "#define PRODUCERS_LUAJIT 1")
endif()

add_library(producers_lua_headers INTERFACE)
target_include_directories(producers_lua_headers INTERFACE ${LUA_INCDIR})
if(NOT LUA_ABI STREQUAL "5.3" AND NOT LUA_ABI STREQUAL "5.4")
  # lua-compat-5.3 brings the 5.3 C API to 5.1, 5.2 and LuaJIT.
  unset(COMPAT53_INCDIR CACHE)   # found again: the Lua may have changed
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
