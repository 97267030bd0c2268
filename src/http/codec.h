// HTTP/1.x message heads parsed in place on the read buffer (string views, no
// per-header allocation), plus a chunked-framing validator used while bodies
// stream through. Strict where leniency enables request smuggling.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/limits.h"

namespace holdfast::http {

struct Header {
  std::string_view name;
  std::string_view value;
};

enum class BodyKind : uint8_t { none, length, chunked, until_close };

using Limits = holdfast::HttpLimits;

enum class ParseStatus : uint8_t { complete, incomplete, error };

// Why a message head was rejected; the status code to answer with.
struct ParseError {
  int status = 400;
  const char* reason = "";
};

struct RequestHead {
  std::string_view method;
  std::string_view target;  // as sent: path?query
  std::string_view path;    // raw (undecoded) path part of target
  std::string_view query;   // without '?'
  int minor = 1;            // HTTP/1.minor
  std::vector<Header> headers;
  std::string_view host;    // Host header value (may include port)
  BodyKind body = BodyKind::none;
  uint64_t content_length = 0;
  bool keep_alive = true;
  bool upgrade_websocket = false;
  bool expect_continue = false;
  size_t head_bytes = 0;    // bytes of the buffer the head occupies

  void clear();
  std::string_view header(std::string_view name) const;  // first match, case-insensitive
};

struct ResponseHead {
  int status = 0;
  int minor = 1;
  std::string_view reason;
  std::vector<Header> headers;
  BodyKind body = BodyKind::none;
  uint64_t content_length = 0;
  bool keep_alive = true;
  size_t head_bytes = 0;

  void clear();
  std::string_view header(std::string_view name) const;
};

ParseStatus parse_request(std::string_view buf, const Limits& limits, RequestHead& out,
                          ParseError& err);

// `request_method` decides whether a body is expected (HEAD never has one).
ParseStatus parse_response(std::string_view buf, std::string_view request_method,
                           ResponseHead& out, ParseError& err);

// Validates chunked transfer-coding incrementally while raw bytes are relayed
// unchanged. feed() consumes input and reports how much belongs to the body.
class ChunkedValidator {
 public:
  enum class Result : uint8_t { need_more, done, error };
  // Consumes bytes from `data`; sets `used` to the number of bytes that are
  // part of this message (all of them unless the message ended inside).
  // With `payload`, the decoded chunk data is appended there too; with
  // `trailers`, each trailer field line, ended by '\n' (an HTTP/2 upstream
  // sends them as a trailing HEADERS frame).
  Result feed(std::string_view data, size_t& used, std::string* payload = nullptr, std::string* trailers = nullptr);
  uint64_t payload_bytes() const { return payload_; }
  void reset() { *this = ChunkedValidator{}; }

 private:
  enum class State : uint8_t {
    size, size_ext, size_lf, data, data_cr, data_lf, trailer_start, trailer_line, trailer_lf,
    final_lf, done
  };
  State state_ = State::size;
  uint64_t chunk_left_ = 0;
  uint64_t payload_ = 0;
  int size_digits_ = 0;
  size_t line_len_ = 0;
};

// Decodes a complete chunked body into its payload (trailers dropped); false
// when `raw` is not one complete, valid chunked body. Safe on any input.
bool decode_chunked(std::string_view raw, std::string& out);

namespace detail {
constexpr std::array<bool, 256> make_tchar() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
inline constexpr auto kTchar = make_tchar();
}  // namespace detail

// RFC 9110 tchar: the bytes of a method or a header name. One table for the
// parser and the head writer, so what one accepts the other writes.
inline bool is_tchar(char c) { return detail::kTchar[static_cast<unsigned char>(c)]; }

bool iequals(std::string_view a, std::string_view b);
// The port of a Host header ("h:8443", "[::1]:8443"); empty when it has
// none or it is not all digits.
std::string_view host_header_port(std::string_view host);
// True when the comma-separated list `value` contains `token` (case-insensitive).
bool header_has_token(std::string_view value, std::string_view token);

}  // namespace holdfast::http
