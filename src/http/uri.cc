#include "http/uri.h"

namespace holdfast::http {
namespace {
int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// nginx's NGX_ESCAPE_URI set (src/core/ngx_string.c).
constexpr ByteSet kUri = {0xffffffff, 0xd000002d, 0x50000000, 0xb8000001,
                          0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff};
// Controls and DEL only.
constexpr ByteSet kControls = {0xffffffff, 0, 0, 0x80000000, 0, 0, 0, 0};
}  // namespace

std::string percent_escape(std::string in, const ByteSet& set) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  auto escaped = [&](unsigned char c) { return (set[c >> 5] >> (c & 0x1f)) & 1u; };
  size_t n = 0;
  for (unsigned char c : in) n += escaped(c);
  if (n == 0) return in;
  std::string out;
  out.reserve(in.size() + 2 * n);
  for (unsigned char c : in) {
    if (escaped(c)) {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string uri_safe_encode(std::string_view uri) { return percent_escape(std::string(uri), kUri); }

std::string escape_uri_control_chars(std::string_view uri) { return percent_escape(std::string(uri), kControls); }

namespace {
std::optional<std::string> percent_decode(std::string_view raw, bool keep_slash) {
  std::string out;
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '%') {
      out += raw[i];
      continue;
    }
    if (i + 2 >= raw.size()) return std::nullopt;
    int h = hexval(raw[i + 1]), l = hexval(raw[i + 2]);
    if (h < 0 || l < 0) return std::nullopt;
    const char c = static_cast<char>(h * 16 + l);
    if (keep_slash && c == '/') out += "%2F";
    else out += c;
    i += 2;
  }
  return out;
}
}  // namespace

std::optional<std::string> match_uri_keep_encoded_slash(std::string_view raw, std::string_view uri) {
  auto plain = percent_decode(raw, false);
  if (!plain || *plain != uri) return std::nullopt;
  return percent_decode(raw, true);
}

std::optional<std::string> normalize_path(std::string_view raw) {
  if (raw.empty() || raw[0] != '/') {
    if (raw == "*") return std::string(raw);
    return std::nullopt;
  }
  std::string decoded;
  decoded.reserve(raw.size());
  bool plain = true;
  for (size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c == '%') {
      if (i + 2 >= raw.size()) return std::nullopt;
      int h = hexval(raw[i + 1]), l = hexval(raw[i + 2]);
      if (h < 0 || l < 0) return std::nullopt;
      c = static_cast<char>(h * 16 + l);
      i += 2;
      plain = false;
    }
    if (c == '\0') return std::nullopt;  // raw or %00: never part of $uri
    decoded += c;
  }
  // Fast path: nothing to resolve.
  if (plain && decoded.find("//") == std::string::npos && decoded.find("/.") == std::string::npos)
    return decoded;
  std::string out;
  out.reserve(decoded.size());
  size_t i = 0;
  while (i < decoded.size()) {
    // decoded[i] == '/'
    size_t j = i + 1;
    while (j < decoded.size() && decoded[j] != '/') ++j;
    std::string_view seg(decoded.data() + i + 1, j - i - 1);
    bool last = j >= decoded.size();
    if (seg.empty()) {
      if (last) out += '/';  // keep a trailing slash; merge inner ones
    } else if (seg == ".") {
      if (last) out += '/';
    } else if (seg == "..") {
      if (out.empty()) return std::nullopt;
      out.resize(out.rfind('/'));
      if (last) out += '/';
    } else {
      out += '/';
      out.append(seg);
    }
    i = j;
  }
  if (out.empty()) out = "/";
  return out;
}

}  // namespace holdfast::http
