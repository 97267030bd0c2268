# Configures and builds the sanitizer binary (ASan + UBSan, jemalloc off) for
# the sanitizer run of the end-to-end tests; run by the CTest test
# sanitize.build. Only the holdfast target: no unit tests, no benchmarks, no
# holdfast-epoll (the run uses io_uring, as the tests do).
# Usage: cmake -DSRC=<source dir> -DOUT=<build dir> -P sanitize_build.cmake
execute_process(
  # -O0 with line tables: the reports keep file and line, and an instrumented
  # translation unit compiles in about a third less time than at -O1 (the
  # slower binary costs the mostly waiting end-to-end files little).
  COMMAND ${CMAKE_COMMAND} -S "${SRC}" -B "${OUT}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
          "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O0 -g1 -DNDEBUG"
          -DHOLDFAST_SANITIZE=ON -DHOLDFAST_TESTS=OFF -DHOLDFAST_BENCH=OFF -DHOLDFAST_EPOLL_FALLBACK=OFF
  RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "configuring the sanitizer build in ${OUT} failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build "${OUT}" --target holdfast RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "building the sanitizer binary in ${OUT} failed")
endif()
