// libFuzzer target: request-path normalisation (normalize_path, nginx's
// $uri). A normalised path starts with '/', has no empty, "." or ".."
// segment inside, no NUL, and normalising it again changes nothing.
#include <cstdint>
#include <string_view>

#include "harness.h"
#include "http/uri.h"

using holdfast::http::normalize_path;
using fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view raw(reinterpret_cast<const char*>(data), size);
  auto out = normalize_path(raw);
  if (!out) return 0;
  if (*out == "*") {
    check(raw == "*");
    return 0;
  }
  const std::string& p = *out;
  check(!p.empty() && p[0] == '/');
  check(p.find('\0') == std::string::npos);
  check(p.find("//") == std::string::npos);
  // "/./" and "/../" never survive; a trailing "/." or "/.." neither.
  check(p.find("/./") == std::string::npos && p.find("/../") == std::string::npos);
  std::string_view tail = p;
  check(!tail.ends_with("/.") && !tail.ends_with("/.."));
  check(p.size() <= raw.size() || p == "/");
  // Without '%' left in it, a normalised path is a fixed point.
  if (p.find('%') == std::string::npos) {
    auto again = normalize_path(p);
    check(again && *again == p);
  }
  return 0;
}
