# Configures and builds the sanitizer binary (ASan + UBSan, jemalloc off) for
# the sanitizer run of the end-to-end tests; run by the CTest test
# sanitize.build. Only the holdfast target: no unit tests, no benchmarks, no
# holdfast-epoll (the run uses io_uring, as the tests do).
# Usage: cmake -DSRC=<source dir> -DOUT=<build dir> -P sanitize_build.cmake
execute_process(
  # -O1 with line tables, as the sanitizers' own documentation advises: the
  # reports keep file and line, and the build takes about 40% less time.
  COMMAND ${CMAKE_COMMAND} -S "${SRC}" -B "${OUT}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
          "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG"
          -DHOLDFAST_SANITIZE=ON -DHOLDFAST_TESTS=OFF -DHOLDFAST_BENCH=OFF -DHOLDFAST_EPOLL_FALLBACK=OFF
  RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "configuring the sanitizer build in ${OUT} failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build "${OUT}" --target holdfast RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "building the sanitizer binary in ${OUT} failed")
endif()
