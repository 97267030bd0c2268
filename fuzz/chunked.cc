// libFuzzer target: chunked transfer-coding (ChunkedValidator, decode_chunked).
// The validator must reach the same verdict, byte count and payload however
// the input is split across reads, and decode_chunked must agree with it.
#include <cstdint>
#include <string>
#include <string_view>

#include "harness.h"
#include "http/codec.h"

using namespace holdfast::http;
using R = ChunkedValidator::Result;
using fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte sets the read size for the split pass (1..256 bytes).
  size_t step = static_cast<size_t>(data[0]) + 1;
  std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);

  ChunkedValidator whole;
  std::string payload_whole;
  size_t used_whole = 0;
  R r_whole = whole.feed(body, used_whole, &payload_whole);
  check(used_whole <= body.size());
  if (r_whole == R::need_more) check(used_whole == body.size());

  ChunkedValidator split;
  std::string payload_split;
  size_t consumed = 0;
  R r_split = R::need_more;
  for (size_t pos = 0; pos < body.size() && r_split == R::need_more; pos += step) {
    size_t used = 0;
    r_split = split.feed(body.substr(pos, step), used, &payload_split);
    check(used <= step);
    consumed += used;
  }
  check(r_split == r_whole);
  check(consumed == used_whole);
  check(payload_split == payload_whole);
  check(whole.payload_bytes() == payload_whole.size() && split.payload_bytes() == payload_split.size());

  std::string decoded;
  bool ok = decode_chunked(body, decoded);
  check(ok == (r_whole == R::done));
  if (ok) check(decoded == payload_whole);
  return 0;
}
