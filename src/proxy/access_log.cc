#include "proxy/access_log.h"

#include <fcntl.h>
#include <unistd.h>

#include "core/log.h"

namespace holdfast::proxy {

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
  if (buf_.size() > 16 * 1024 * 1024) {
    ++dropped_;
    return;
  }
  buf_.append(line);
  buf_ += '\n';
}

void AccessLog::flush() {
  if (fd_ < 0) return;
  std::string out;
  {
    std::lock_guard lk(mu_);
    out.swap(buf_);
  }
  size_t off = 0;
  while (off < out.size()) {
    ssize_t n = ::write(fd_, out.data() + off, out.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
}

}  // namespace holdfast::proxy
