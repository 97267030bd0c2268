// Decoding of a response body's Content-Encoding (gzip, br) for plugins that
// rewrite the body (response-rewrite filters), with a bound on the decoded
// size so that a small compressed body cannot expand into a large one.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace holdfast::http {

enum class DecodeStatus : uint8_t {
  ok,           // the whole stream, within the limit
  limited,      // the output reached the limit: `out` holds its first `limit` bytes
  incomplete,   // the input ended inside the stream: `out` holds what it decoded to
  unsupported,  // a coding other than gzip and br
  corrupt,      // not a valid stream (`error` says why); `out` is unspecified
};

struct Decoded {
  DecodeStatus status = DecodeStatus::ok;
  std::string error;  // for corrupt: the decoder's reason
};

// True for the codings decode_content takes: "gzip" and "br", in any case,
// with optional surrounding blanks (one coding only: a list is unsupported).
bool content_coding_supported(std::string_view coding);

// Decodes `in` (a body sent with Content-Encoding `coding`) into `out`,
// writing at most `limit` bytes: decoding stops there, so the work and the
// memory are bounded by the limit (plus the decoder's own window: 32 KiB for
// gzip, at most 16 MiB for br), whatever the input claims. A gzip stream is
// one member; bytes after its end are ignored.
Decoded decode_content(std::string_view coding, std::string_view in, size_t limit, std::string& out);

}  // namespace holdfast::http
