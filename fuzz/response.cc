// libFuzzer target: the response-head parser (parse_response) on arbitrary
// bytes, as an origin could send them. Checks views, the status range and
// that a head is never complete before its last byte has arrived.
#include <cstdint>
#include <string_view>

#include "harness.h"
#include "http/codec.h"

using namespace holdfast::http;
using fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the request method the response answers.
  std::string_view method = (data[0] & 3) == 0 ? "HEAD" : (data[0] & 3) == 1 ? "POST" : "GET";
  std::string_view buf(reinterpret_cast<const char*>(data) + 1, size - 1);
  ResponseHead head;
  ParseError err;
  ParseStatus st = parse_response(buf, method, head, err);
  if (st == ParseStatus::error) {
    check(err.status == 502);
    return 0;
  }
  if (st != ParseStatus::complete) return 0;
  fuzz::check_head(buf, head, [&](std::string_view prefix) {
    ResponseHead shorter;
    return parse_response(prefix, method, shorter, err) == ParseStatus::complete;
  });
  check(head.status >= 100 && head.status <= 599);
  check(fuzz::inside(buf, head.reason));
  if (method == "HEAD" || head.status < 200 || head.status == 204 || head.status == 304)
    check(head.body == BodyKind::none);
  if (head.body == BodyKind::until_close) check(!head.keep_alive);
  return 0;
}
