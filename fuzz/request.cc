// libFuzzer target: the request-head parser (parse_request) on arbitrary
// bytes. Beyond "no crash", it checks that every view points into the input
// and that a head is never complete before its last byte has arrived (the
// proxy re-parses as bytes come in; an earlier "complete" would split one
// request differently from the peer).
#include <cstdint>
#include <string_view>

#include "harness.h"
#include "http/codec.h"

using namespace holdfast::http;
using fuzz::check;
using fuzz::inside;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view buf(reinterpret_cast<const char*>(data), size);
  Limits limits;
  limits.max_head_bytes = 4096;
  limits.max_uri_bytes = 1024;
  limits.max_headers = 32;
  limits.max_body_bytes = 1 << 20;
  RequestHead head;
  ParseError err;
  ParseStatus st = parse_request(buf, limits, head, err);
  if (st == ParseStatus::error) {
    check(err.status >= 400 && err.status < 500);
    return 0;
  }
  if (st != ParseStatus::complete) return 0;
  fuzz::check_head(buf, head, [&](std::string_view prefix) {
    RequestHead shorter;
    return parse_request(prefix, limits, shorter, err) == ParseStatus::complete;
  });
  check(head.head_bytes <= limits.max_head_bytes);
  check(!head.method.empty() && !head.target.empty());
  check(head.minor == 0 || head.minor == 1);
  for (std::string_view v : {head.method, head.target, head.query}) check(inside(buf, v));
  check(inside(buf, head.path) || head.path == "/");  // absolute-form without a path: "/"
  if (head.body == BodyKind::length && limits.max_body_bytes) check(head.content_length <= limits.max_body_bytes);
  // Bytes after the head do not change how the head parses.
  RequestHead exact;
  check(parse_request(buf.substr(0, head.head_bytes), limits, exact, err) == ParseStatus::complete);
  check(exact.head_bytes == head.head_bytes && exact.target == head.target && exact.body == head.body &&
        exact.content_length == head.content_length && exact.headers.size() == head.headers.size());
  return 0;
}
