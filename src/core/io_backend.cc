#include "core/io_backend.h"

#include <linux/io_uring.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "core/log.h"

namespace holdfast::io_backend {
namespace {

// Operators (and tests) force a backend with HOLDFAST_BACKEND=epoll|io_uring;
// unset, empty or "auto" probes. The io_uring build passes the probe's error
// to holdfast-epoll in kFallbackReason so that its start-up line says why.
constexpr const char* kBackendEnv = "HOLDFAST_BACKEND";
constexpr const char* kFallbackReason = "HOLDFAST_IO_URING_ERROR";

// Environment values end up in messages: keep them to printable ASCII.
std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s.substr(0, 200)) out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  return out;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

enum class Wanted { automatic, epoll, io_uring, invalid };

Wanted wanted() {
  std::string v = env(kBackendEnv);
  if (v.empty() || v == "auto") return Wanted::automatic;
  if (v == "epoll") return Wanted::epoll;
  if (v == "io_uring") return Wanted::io_uring;
  return Wanted::invalid;
}

#if defined(BOOST_ASIO_HAS_IO_URING)

// The probe creates a ring as Asio will (src/proxy/worker.cc adds the flags):
// the same number of entries, IORING_SETUP_COOP_TASKRUN and, where the kernel
// refuses that flag, none. A seccomp profile may deny io_uring_enter alone,
// so an empty enter is tried as well. Raw syscalls: nothing is mapped.
// Asio 1.81's ring size (io_uring_service::ring_size, a private member).
constexpr unsigned kRingEntries = 16384;

int setup_ring(unsigned flags) {
  io_uring_params p{};
  p.flags = flags;
  return static_cast<int>(::syscall(__NR_io_uring_setup, kRingEntries, &p));
}

// Empty when io_uring works here, else what failed ("io_uring_setup: ...").
std::string probe() {
  int fd = setup_ring(IORING_SETUP_COOP_TASKRUN);
  if (fd < 0 && errno == EINVAL) fd = setup_ring(0);
  if (fd < 0) return std::string("io_uring_setup: ") + std::strerror(errno);
  long r = ::syscall(__NR_io_uring_enter, fd, 0, 0, 0, nullptr, 0);
  int err = errno;
  ::close(fd);
  if (r < 0) return std::string("io_uring_enter: ") + std::strerror(err);
  return {};
}

std::string epoll_binary() {
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return "holdfast-epoll";
  std::string path(self, static_cast<size_t>(n));
  auto slash = path.rfind('/');
  return (slash == std::string::npos ? std::string() : path.substr(0, slash + 1)) + "holdfast-epoll";
}

#endif

}  // namespace

std::optional<int> choose(char** argv) {
  Wanted w = wanted();
  if (w == Wanted::invalid) {
    std::fprintf(stderr, "holdfast: %s must be epoll, io_uring or auto, got \"%s\"\n", kBackendEnv,
                 printable(env(kBackendEnv)).c_str());
    return 2;
  }
#if defined(BOOST_ASIO_HAS_IO_URING)
  std::string failure;
  if (w != Wanted::epoll) {
    failure = probe();
    if (failure.empty()) return std::nullopt;
    if (w == Wanted::io_uring) {
      std::fprintf(stderr, "holdfast: %s=io_uring, but io_uring is unavailable here (%s)\n", kBackendEnv,
                   failure.c_str());
      return 1;
    }
    ::setenv(kFallbackReason, failure.c_str(), 1);
  }
  std::string target = epoll_binary();
  ::execv(target.c_str(), argv);
  int err = errno;
  std::string advice = failure.empty() ? "install it beside holdfast"
                                       : "io_uring is unavailable here (" + failure +
                                             "): install holdfast-epoll beside holdfast, or allow the io_uring syscalls";
  std::fprintf(stderr, "holdfast: cannot run the epoll build %s: %s; %s\n", printable(target).c_str(),
               std::strerror(err), advice.c_str());
  return 1;
#else
  (void)argv;
  if (w == Wanted::io_uring) {
    std::fprintf(stderr, "holdfast: %s=io_uring, but this is the epoll build (HOLDFAST_IO_URING=OFF)\n",
                 kBackendEnv);
    return 1;
  }
  return std::nullopt;
#endif
}

void log_choice() {
#if defined(BOOST_ASIO_HAS_IO_URING)
  if (wanted() == Wanted::io_uring) log::info("I/O backend: io_uring ({}=io_uring)", kBackendEnv);
  else log::info("I/O backend: io_uring");
#else
  std::string reason = env(kFallbackReason);
  if (wanted() == Wanted::epoll) log::info("I/O backend: epoll ({}=epoll)", kBackendEnv);
  else if (!reason.empty()) log::warn("I/O backend: epoll (io_uring unavailable: {})", printable(reason));
  else log::info("I/O backend: epoll (built with HOLDFAST_IO_URING=OFF)");
#endif
}

}  // namespace holdfast::io_backend
