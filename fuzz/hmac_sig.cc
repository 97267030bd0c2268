// libFuzzer target: hmac-auth's Authorization Signature parser and the
// Date parser (every request to an hmac-auth route reaches both before any
// key is looked up). Parsing is deterministic; a parse needs the
// "Signature" prefix; every value found is a piece of the input without a
// '"' or ','; header names are non-empty and without spaces; the signing
// string starts with the keyId line and ends with a newline; a parsed Date
// re-printed in RFC 1123 form parses to the same time.
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

#include "harness.h"
#include "plugins/hmac_signature.h"

using fuzz::check;
namespace hmac = holdfast::plugins::hmac;

namespace {

bool piece(std::string_view in, const std::string& v) {
  return v.find('"') == std::string::npos && v.find(',') == std::string::npos && in.find(v) != std::string_view::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto a = hmac::parse_signature(in);
  auto b = hmac::parse_signature(in);
  check(a.has_value() == b.has_value());
  check(a.has_value() == in.starts_with("Signature"));
  if (a) {
    check(a->key_id == b->key_id && a->algorithm == b->algorithm && a->signature == b->signature &&
          a->headers == b->headers);
    for (const auto* v : {&a->key_id, &a->algorithm, &a->signature})
      if (*v) check(piece(in, **v));
    if (a->headers)
      for (const auto& h : *a->headers) check(!h.empty() && h.find(' ') == std::string::npos && piece(in, h));
    std::string s = hmac::signing_string(*a, "GET", "", [](std::string_view n) -> std::optional<std::string> {
      if (n == "date") return std::string("x");
      return std::nullopt;
    });
    check(s.starts_with(a->key_id.value_or("") + "\n") && s.back() == '\n');
  }
  if (auto t = hmac::parse_http_time(in)) {
    check(hmac::parse_http_time(in) == t);
    if (*t >= 0 && *t < 253402300800) {  // years 1970-9999 print as four digits
      std::time_t tt = static_cast<std::time_t>(*t);
      std::tm tm{};
      gmtime_r(&tt, &tm);
      char buf[64];
      std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
      check(hmac::parse_http_time(buf) == t);
    }
  }
  return 0;
}
