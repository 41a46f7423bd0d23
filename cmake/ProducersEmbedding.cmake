# The embedding library, named for the Lua it is built for (PRODUCERS_NAME:
# lua5.4-producers, luajit-producers ...), so builds for several Lua
# versions install into one prefix side by side:
#   <libdir>/lib<name>.a, lib<name>.so.0    the Lua files compiled in
#   <includedir>/<name>/producers.h, producers_lua.h
#   <libdir>/pkgconfig/<name>.pc            shared; Requires: Lua, rdkafka
#   <libdir>/pkgconfig/<name>-static.pc     the .a; Requires: Lua, rdkafka
#   <libdir>/cmake/<name>/                  find_package(<name>):
#                                           <name>::static, <name>::shared
set(PRODUCERS_EMBEDDED ${CMAKE_BINARY_DIR}/producers_embedded.c)
string(REPLACE ";" "|" lua_file_list "${PRODUCERS_LUA_FILES}")
add_custom_command(OUTPUT ${PRODUCERS_EMBEDDED}
  COMMAND ${CMAKE_COMMAND} -DOUT=${PRODUCERS_EMBEDDED} "-DSOURCES=${lua_file_list}"
          -P ${PROJECT_SOURCE_DIR}/cmake/EmbedLua.cmake
  VERBATIM
  DEPENDS ${PRODUCERS_LUA_FILES} ${PROJECT_SOURCE_DIR}/cmake/EmbedLua.cmake
  COMMENT "Embedding the Lua files")

set(PRODUCERS_INSTALL_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR}/${PRODUCERS_NAME})
set(PRODUCERS_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/${PRODUCERS_NAME})
foreach(kind static shared)
  string(TOUPPER ${kind} KIND)
  add_library(producers_${kind} ${KIND} $<TARGET_OBJECTS:producers_objects>
              src/core/embed.c ${PRODUCERS_EMBEDDED})
  set_target_properties(producers_${kind} PROPERTIES OUTPUT_NAME ${PRODUCERS_NAME}
    EXPORT_NAME ${kind} POSITION_INDEPENDENT_CODE ON
    PUBLIC_HEADER "include/producers.h;${CMAKE_BINARY_DIR}/include/producers_lua.h")
  target_include_directories(producers_${kind} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include> $<BUILD_INTERFACE:${CMAKE_BINARY_DIR}/include>
    $<INSTALL_INTERFACE:${PRODUCERS_INSTALL_INCLUDEDIR}>)
  target_include_directories(producers_${kind} PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_compile_options(producers_${kind} PRIVATE -Wall -Wextra)
  if(PRODUCERS_WERROR)
    target_compile_options(producers_${kind} PRIVATE -Werror)
  endif()
  # Lua and librdkafka reach the installed targets through the package's
  # config file (producersConfig.cmake.in), which finds them there.
  target_link_libraries(producers_${kind} PUBLIC $<BUILD_INTERFACE:producers_lua_headers>)
  target_link_libraries(producers_${kind} PRIVATE $<BUILD_INTERFACE:producers_rdkafka>)
  if(PRODUCERS_NATS)
    target_link_libraries(producers_${kind} PRIVATE $<BUILD_INTERFACE:producers_nats>)
  endif()
endforeach()
set_target_properties(producers_shared PROPERTIES VERSION ${PROJECT_VERSION} SOVERSION 0)
target_link_libraries(producers_static INTERFACE $<BUILD_INTERFACE:producers_rdkafka>)
# With the NATS transport, libnats too: the .pc files require it, the
# config file links -lnats to the archive's users.
set(PRODUCERS_PC_NATS "")
set(PRODUCERS_NATS_LINK "")
if(PRODUCERS_NATS)
  target_link_libraries(producers_static INTERFACE $<BUILD_INTERFACE:producers_nats>)
  set(PRODUCERS_PC_NATS " libnats")
  set(PRODUCERS_NATS_LINK "nats")
endif()

install(TARGETS producers_static producers_shared EXPORT producersTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  PUBLIC_HEADER DESTINATION ${PRODUCERS_INSTALL_INCLUDEDIR})
install(EXPORT producersTargets NAMESPACE ${PRODUCERS_NAME}::
  FILE ${PRODUCERS_NAME}Targets.cmake DESTINATION ${PRODUCERS_INSTALL_CMAKEDIR})
include(CMakePackageConfigHelpers)
# Lua's include folder for the config file when pkg-config does not know it
set(PRODUCERS_LUA_INCDIRS "${LUA_INCDIR}")
configure_package_config_file(cmake/producersConfig.cmake.in
  ${CMAKE_BINARY_DIR}/${PRODUCERS_NAME}Config.cmake
  INSTALL_DESTINATION ${PRODUCERS_INSTALL_CMAKEDIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/${PRODUCERS_NAME}ConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/${PRODUCERS_NAME}Config.cmake
              ${CMAKE_BINARY_DIR}/${PRODUCERS_NAME}ConfigVersion.cmake
  DESTINATION ${PRODUCERS_INSTALL_CMAKEDIR})

# pkg-config files, relocatable (prefix from their own folder). Lua comes
# through Requires when pkg-config knows it, else as a -I of its headers.
file(RELATIVE_PATH PRODUCERS_PC_PREFIX /root/${CMAKE_INSTALL_LIBDIR}/pkgconfig /root)
string(REGEX REPLACE "/$" "" PRODUCERS_PC_PREFIX "${PRODUCERS_PC_PREFIX}")
set(PRODUCERS_PC_LUA_REQUIRES "${PRODUCERS_LUA_PC}")
set(PRODUCERS_PC_LUA_CFLAGS "")
if(NOT PRODUCERS_LUA_PC)
  foreach(dir ${LUA_INCDIR})
    string(APPEND PRODUCERS_PC_LUA_CFLAGS " -I${dir}")
  endforeach()
endif()
foreach(variant "" "-static")
  configure_file(cmake/producers${variant}.pc.in ${CMAKE_BINARY_DIR}/${PRODUCERS_NAME}${variant}.pc @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/${PRODUCERS_NAME}${variant}.pc
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endforeach()
