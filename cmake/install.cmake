# Installs the headers and an exported package, so that
#   find_package(glassbox CONFIG REQUIRED)
#   target_link_libraries(app PRIVATE glassbox::glassbox)
# works against the installed prefix.
include(CMakePackageConfigHelpers)

# Header-only, so architecture-independent: share/, not the multiarch lib/.
set(GLASSBOX_CMAKE_DIR ${CMAKE_INSTALL_DATADIR}/cmake/glassbox)

install(TARGETS glassbox EXPORT glassboxTargets)
install(DIRECTORY include/glassbox DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# The precompiled-instance sources (README, "Compile times"), for users who add them to their own target.
install(FILES src/instances_nn.cpp src/instances_inspect.cpp DESTINATION ${CMAKE_INSTALL_DATADIR}/glassbox/src)
install(EXPORT glassboxTargets NAMESPACE glassbox:: DESTINATION ${GLASSBOX_CMAKE_DIR})
# glassbox::dist in a file of its own: the package config loads it only where MPI is found.
if(GLASSBOX_WITH_MPI)
  install(TARGETS glassbox_dist EXPORT glassboxDistTargets)
  install(EXPORT glassboxDistTargets NAMESPACE glassbox:: DESTINATION ${GLASSBOX_CMAKE_DIR})
endif()

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/glassboxConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/glassboxConfig.cmake
  INSTALL_DESTINATION ${GLASSBOX_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/glassboxConfigVersion.cmake
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/glassboxConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/glassboxConfigVersion.cmake
  DESTINATION ${GLASSBOX_CMAKE_DIR})
