// Which I/O backend this process runs on. Asio fixes its backend at compile
// time, so the io_uring build ships with holdfast-epoll (the same sources built
// with HOLDFAST_IO_URING=OFF) beside it and hands over to it where io_uring is
// denied (container seccomp profiles, kernel.io_uring_disabled, old kernels).
#pragma once
#include <optional>

namespace holdfast::io_backend {

// Called first in main(), before any io_context exists. The io_uring build
// probes io_uring as Asio will use it and, when it is unavailable or
// HOLDFAST_BACKEND=epoll, execs holdfast-epoll from the folder of
// /proc/self/exe with the same argv (and does not return). Returns an exit
// code when the process must stop (a bad HOLDFAST_BACKEND, io_uring forced but
// unavailable, holdfast-epoll missing); nullopt to go on in this process.
std::optional<int> choose(char** argv);

// Logs one line naming the backend that runs and why (after logging is set up).
void log_choice();

}  // namespace holdfast::io_backend
