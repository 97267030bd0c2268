// Process-wide logging to stderr: text or JSON lines, one write(2) per line
// so that lines from different threads never interleave.
#pragma once
#include <fmt/format.h>

#include <string_view>

namespace holdfast::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

void set_level(Level level);
void set_json(bool json);
bool enabled(Level level);
void write(Level level, std::string_view msg);

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::debug)) write(Level::debug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::info)) write(Level::info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::warn)) write(Level::warn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::error)) write(Level::error, fmt::format(f, std::forward<Args>(args)...));
}

// Escapes a string for inclusion in a JSON string literal.
std::string json_escape(std::string_view s);

}  // namespace holdfast::log
