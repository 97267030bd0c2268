#include "http/access_log.h"

#include <fcntl.h>
#include <unistd.h>

#include "core/log.h"

namespace holdfast::http {

AccessLog::AccessLog(const std::string& path) {
  if (path.empty()) return;
  if (path == "stderr") { fd_ = 2; return; }
  if (path == "stdout") { fd_ = 1; return; }
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) log::error("cannot open access log {}", path);
  own_ = fd_ >= 0;
}

AccessLog::~AccessLog() {
  flush();
  if (own_) ::close(fd_);
}

void AccessLog::append(std::string_view line) {
  if (fd_ < 0) return;
  std::lock_guard lk(mu_);
  buf_.append(line);
  buf_ += '\n';
  if (buf_.size() < 32 * 1024) return;
  ssize_t n = ::write(fd_, buf_.data(), buf_.size());
  (void)n;
  buf_.clear();
}

void AccessLog::flush() {
  if (fd_ < 0) return;
  std::lock_guard lk(mu_);
  if (buf_.empty()) return;
  ssize_t n = ::write(fd_, buf_.data(), buf_.size());
  (void)n;
  buf_.clear();
}

}  // namespace holdfast::http
