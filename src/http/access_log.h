// Access log: one line per request, buffered per process and written in
// large appends (like nginx's buffered access_log) so a request never waits
// on the file.
#pragma once
#include <mutex>
#include <string>
#include <string_view>

namespace holdfast::http {

class AccessLog {
 public:
  explicit AccessLog(const std::string& path);  // "", "stderr", "stdout" or a file
  ~AccessLog();
  bool enabled() const { return fd_ >= 0; }
  void append(std::string_view line);
  void flush();

 private:
  int fd_ = -1;
  bool own_ = false;
  std::mutex mu_;
  std::string buf_;
};

}  // namespace holdfast::http
