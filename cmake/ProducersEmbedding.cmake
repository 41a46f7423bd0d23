# The embedding library: libproducers.a and libproducers.so, with the Lua
# files compiled in (include/producers.h: producers_preload), installed
# with a CMake package (find_package(producers)) and a pkg-config file.
set(PRODUCERS_EMBEDDED ${CMAKE_BINARY_DIR}/producers_embedded.c)
string(REPLACE ";" "|" lua_file_list "${PRODUCERS_LUA_FILES}")
add_custom_command(OUTPUT ${PRODUCERS_EMBEDDED}
  COMMAND ${CMAKE_COMMAND} -DOUT=${PRODUCERS_EMBEDDED} "-DSOURCES=${lua_file_list}"
          -P ${PROJECT_SOURCE_DIR}/cmake/EmbedLua.cmake
  VERBATIM
  DEPENDS ${PRODUCERS_LUA_FILES} ${PROJECT_SOURCE_DIR}/cmake/EmbedLua.cmake
  COMMENT "Embedding the Lua files")

foreach(kind static shared)
  string(TOUPPER ${kind} KIND)
  add_library(producers_${kind} ${KIND} $<TARGET_OBJECTS:producers_objects>
              src/embed.c ${PRODUCERS_EMBEDDED})
  set_target_properties(producers_${kind} PROPERTIES OUTPUT_NAME producers
    POSITION_INDEPENDENT_CODE ON PUBLIC_HEADER include/producers.h)
  target_include_directories(producers_${kind} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:include>)
  target_include_directories(producers_${kind} PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(producers_${kind} PRIVATE $<BUILD_INTERFACE:producers_lua_headers>)
endforeach()
set_target_properties(producers_shared PROPERTIES VERSION ${PROJECT_VERSION} SOVERSION 0)
target_link_libraries(producers_static PUBLIC PkgConfig::RDKAFKA)
target_link_libraries(producers_shared PRIVATE PkgConfig::RDKAFKA)

install(TARGETS producers_static producers_shared EXPORT producersTargets
  ARCHIVE DESTINATION lib
  LIBRARY DESTINATION lib
  PUBLIC_HEADER DESTINATION include)
install(EXPORT producersTargets NAMESPACE producers::
  DESTINATION lib/cmake/producers)
include(CMakePackageConfigHelpers)
configure_package_config_file(cmake/producersConfig.cmake.in
  ${CMAKE_BINARY_DIR}/producersConfig.cmake
  INSTALL_DESTINATION lib/cmake/producers)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/producersConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/producersConfig.cmake ${CMAKE_BINARY_DIR}/producersConfigVersion.cmake
  DESTINATION lib/cmake/producers)
configure_file(cmake/producers.pc.in ${CMAKE_BINARY_DIR}/producers.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/producers.pc DESTINATION lib/pkgconfig)
