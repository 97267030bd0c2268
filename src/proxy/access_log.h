// Access log: workers only append lines to a memory buffer; the control
// thread writes it out (flush) a few times a second, so a request never
// waits on the file. If the writer falls far behind, lines are dropped and
// counted rather than letting memory grow.
#pragma once
#include <mutex>
#include <string>
#include <string_view>

namespace holdfast::proxy {

class AccessLog {
 public:
  explicit AccessLog(const std::string& path);  // "", "stderr", "stdout" or a file
  ~AccessLog();
  bool enabled() const { return fd_ >= 0; }
  void append(std::string_view line);  // any thread; never does I/O
  void flush();                        // control thread
  uint64_t dropped() const { return dropped_; }

 private:
  int fd_ = -1;
  bool own_ = false;
  std::mutex mu_;
  std::string buf_;
  uint64_t dropped_ = 0;
};

}  // namespace holdfast::proxy
