# ctest driver: builds tests/package/consumer against glassbox, either as an
# installed package (MODE=find_package: installs BUILD_DIR into a prefix under
# WORK_DIR first) or through add_subdirectory (MODE=add_subdirectory), then runs it.
# MODE=examples builds tests/package/examples (every example of EXAMPLES_DIR)
# against the installed package instead, and runs nothing.
file(REMOVE_RECURSE ${WORK_DIR})
set(consumer_src ${CMAKE_CURRENT_LIST_DIR}/consumer)
if(MODE STREQUAL "examples")
  set(consumer_src ${CMAKE_CURRENT_LIST_DIR}/examples)
endif()
if(MODE STREQUAL "find_package" OR MODE STREQUAL "examples")
  execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix
                  RESULT_VARIABLE rc OUTPUT_QUIET)
  if(rc)
    message(FATAL_ERROR "install failed (${rc})")
  endif()
  set(configure_args -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
else()
  set(configure_args -DGLASSBOX_SOURCE_DIR=${SOURCE_DIR})
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${consumer_src} -B ${WORK_DIR}/build -G ${GENERATOR}
                        -DCMAKE_BUILD_TYPE=Release -DEXPECT_DIST=${EXPECT_DIST} -DEXAMPLES_DIR=${SOURCE_DIR}/examples
                        ${configure_args}
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "configuring the consumer failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/build --parallel 2 RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "building the consumer failed (${rc})")
endif()
if(MODE STREQUAL "examples")
  message("examples: ok")
  return()
endif()
execute_process(COMMAND ${WORK_DIR}/build/consumer RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "the consumer failed (${rc})")
endif()
