#include "core/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>

namespace holdfast::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::info)};
std::atomic<bool> g_json{false};

const char* level_name(Level l) {
  switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
  }
  return "?";
}

std::string timestamp() {
  auto now = std::chrono::system_clock::now();
  auto t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03d}Z", buf, ms);
}
}  // namespace

void set_level(Level level) { g_level = static_cast<int>(level); }
void set_json(bool json) { g_json = json; }
bool enabled(Level level) { return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed); }

std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) out += fmt::format("\\u{:04x}", c);
        else out += static_cast<char>(c);
    }
  }
  return out;
}

namespace {
// A message may quote what a client or a file sent: in a text log a control
// character in it would forge or hide lines, so it goes out as \xNN.
std::string escape_controls(std::string_view s) {
  bool clean = true;
  for (unsigned char c : s) clean &= c >= 0x20 && c != 0x7f;
  if (clean) return std::string(s);
  std::string out;
  out.reserve(s.size() + 16);
  for (unsigned char c : s) {
    if (c >= 0x20 && c != 0x7f) out += static_cast<char>(c);
    else out += fmt::format("\\x{:02x}", c);
  }
  return out;
}
}  // namespace

void write(Level level, std::string_view msg) {
  std::string line;
  if (g_json.load(std::memory_order_relaxed)) {
    line = fmt::format("{{\"time\":\"{}\",\"level\":\"{}\",\"msg\":\"{}\"}}\n", timestamp(),
                       level_name(level), json_escape(msg));
  } else {
    line = fmt::format("{} [{}] {}\n", timestamp(), level_name(level), escape_controls(msg));
  }
  // One write per line keeps lines whole across threads.
  ssize_t off = 0;
  while (off < static_cast<ssize_t>(line.size())) {
    ssize_t n = ::write(2, line.data() + off, line.size() - off);
    if (n <= 0) break;
    off += n;
  }
}

}  // namespace holdfast::log
