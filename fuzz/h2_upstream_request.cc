// libFuzzer target: the HTTP/1.1 request an HTTP/2 upstream call converts
// (H1ToH2Request: head, Content-Length or chunked body, chunked trailers).
// Random bytes must never crash it; the verdict, payload, fields and
// trailers must not depend on how the bytes are split across writes; every
// field it yields is lowercase and free of control characters (nghttp2
// would send what it is given).
#include <cstdint>
#include <string>
#include <string_view>

#include "harness.h"
#include "http/h2_upstream_codec.h"

using namespace holdfast::http;
using fuzz::check;

namespace {

struct Run {
  bool ok = true;
  bool head = false, ended = false;
  std::string payload, fields, trailers;
};

void fields_ok(const std::vector<H2Field>& v, std::string& into) {
  for (const auto& f : v) {
    check(!f.name.empty());
    for (char c : f.name) check(!(c >= 'A' && c <= 'Z'));
    for (char c : f.value) {
      auto u = static_cast<unsigned char>(c);
      check(c == '\t' || (u >= 0x20 && u != 0x7f));
    }
    into.append(f.name).append("=").append(f.value).append("\n");
  }
}

Run convert(std::string_view in, size_t step) {
  H1ToH2Request r("http");
  Run out;
  for (size_t pos = 0; pos < in.size() && out.ok; pos += step) out.ok = r.feed(in.substr(pos, step), out.payload);
  out.head = r.head_done();
  out.ended = r.ended();
  if (out.ok && out.head) fields_ok(r.fields(), out.fields);
  if (out.ok && out.ended) fields_ok(r.trailers(), out.trailers);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t step = static_cast<size_t>(data[0]) + 1;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  Run whole = convert(in, in.size() ? in.size() : 1);
  Run split = convert(in, step);
  check(whole.ok == split.ok);
  if (!whole.ok) return 0;
  check(whole.head == split.head && whole.ended == split.ended);
  check(whole.payload == split.payload);
  check(whole.fields == split.fields);
  check(whole.trailers == split.trailers);
  return 0;
}
