// libFuzzer target: response body decoding (http/content_decode.h), gzip and
// br. The first byte picks the coding and the output limit; the rest is the
// encoded body. Properties: the output never exceeds the limit, and decoding
// is a prefix function of the limit (a larger limit gives the same bytes
// first), so a cut never changes what comes before it.
#include <cstdint>
#include <string>
#include <string_view>

#include "harness.h"
#include "http/content_decode.h"

using fuzz::check;
using holdfast::http::decode_content;
using holdfast::http::DecodeStatus;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const char* coding = (data[0] & 1) ? "br" : "gzip";
  const size_t limit = 1 + (static_cast<size_t>(data[0] >> 1) << 9);  // 1 .. 64 KiB
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

  std::string small, large;
  auto a = decode_content(coding, in, limit, small);
  check(small.size() <= limit || a.status == DecodeStatus::corrupt);
  if (a.status == DecodeStatus::corrupt) return 0;
  auto b = decode_content(coding, in, 4 * limit, large);
  check(large.size() <= 4 * limit || b.status == DecodeStatus::corrupt);
  if (b.status == DecodeStatus::corrupt) return 0;  // an error past the first limit
  check(large.substr(0, small.size()) == small);
  if (a.status == DecodeStatus::ok || a.status == DecodeStatus::incomplete) {
    check(large == small);
    check(b.status == a.status);
  }
  if (a.status == DecodeStatus::limited) check(small.size() == limit);
  return 0;
}
