#include "http/codec.h"

#include <gtest/gtest.h>

using namespace holdfast::http;

namespace {
ParseStatus parse(std::string_view s, RequestHead& h, ParseError& e) { return parse_request(s, Limits{}, h, e); }
}  // namespace

TEST(Codec, ParsesSimpleRequest) {
  RequestHead h;
  ParseError e;
  ASSERT_EQ(parse("GET /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\nX-A:  v \r\n\r\nrest", h, e), ParseStatus::complete);
  EXPECT_EQ(h.method, "GET");
  EXPECT_EQ(h.path, "/a/b");
  EXPECT_EQ(h.query, "x=1");
  EXPECT_EQ(h.host, "example.com");
  EXPECT_EQ(h.header("x-a"), "v");
  EXPECT_EQ(h.body, BodyKind::none);
  EXPECT_TRUE(h.keep_alive);
  EXPECT_EQ(std::string_view("GET /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\nX-A:  v \r\n\r\nrest").substr(h.head_bytes), "rest");
}

TEST(Codec, IncompleteUntilEmptyLine) {
  RequestHead h;
  ParseError e;
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\n", h, e), ParseStatus::incomplete);
}

// Header values are forwarded as they are, so a control character in one
// is refused on the way in (HTAB and obs-text stay allowed).
TEST(Codec, ControlCharactersInHeaderValues) {
  RequestHead h;
  ParseError e;
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\tb\x80\xff\r\n\r\n", h, e), ParseStatus::complete);
  EXPECT_EQ(h.header("x-a"), "a\tb\x80\xff");
  for (std::string bad : {std::string("a\x01" "b"), std::string("a\x1f"), std::string("a\x7f"), std::string("a\0b", 3),
                          std::string("a\x0b" "b")}) {
    EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nX-A: " + bad + "\r\n\r\n", h, e), ParseStatus::error) << bad;
    EXPECT_EQ(e.status, 400);
  }
  ResponseHead r;
  EXPECT_EQ(parse_response("HTTP/1.1 200 OK\r\nX-A: a\x01" "b\r\nContent-Length: 0\r\n\r\n", "GET", r, e),
            ParseStatus::error);
  EXPECT_EQ(e.status, 502);
  EXPECT_EQ(parse_response("HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n", "GET", r, e), ParseStatus::error);
  EXPECT_EQ(parse_response("HTTP/1.1 200 O\tK\r\nContent-Length: 0\r\n\r\n", "GET", r, e), ParseStatus::complete);
}

struct BadCase {
  const char* name;
  const char* text;
  int status;
};

class CodecReject : public ::testing::TestWithParam<BadCase> {};

TEST_P(CodecReject, Rejects) {
  RequestHead h;
  ParseError e;
  EXPECT_EQ(parse(GetParam().text, h, e), ParseStatus::error) << GetParam().name;
  EXPECT_EQ(e.status, GetParam().status) << GetParam().name;
}

INSTANTIATE_TEST_SUITE_P(
    Smuggling, CodecReject,
    ::testing::Values(
        BadCase{"cl_and_te", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        BadCase{"duplicate_cl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400},
        BadCase{"invalid_cl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5x\r\n\r\n", 400},
        BadCase{"negative_cl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400},
        BadCase{"cl_list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", 400},
        BadCase{"te_not_chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
        BadCase{"te_chunked_twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        BadCase{"te_obfuscated", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400},
        BadCase{"obs_fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400},
        BadCase{"space_before_colon", "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400},
        BadCase{"bare_cr", "GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", 400},
        BadCase{"missing_host", "GET / HTTP/1.1\r\n\r\n", 400},
        BadCase{"two_hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        BadCase{"bad_version", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400},
        BadCase{"chunked_http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        BadCase{"ctl_in_target", "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400}),
    [](const ::testing::TestParamInfo<BadCase>& info) { return std::string(info.param.name); });

TEST(Codec, UriTooLong) {
  RequestHead h;
  ParseError e;
  Limits l;
  l.max_uri_bytes = 100;
  std::string req = "GET /" + std::string(200, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n";
  EXPECT_EQ(parse_request(req, l, h, e), ParseStatus::error);
  EXPECT_EQ(e.status, 414);
}

TEST(Codec, HeadersTooLarge) {
  RequestHead h;
  ParseError e;
  Limits l;
  l.max_head_bytes = 1024;
  std::string req = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(2000, 'a') + "\r\n\r\n";
  EXPECT_EQ(parse_request(req, l, h, e), ParseStatus::error);
  EXPECT_EQ(e.status, 431);
}

TEST(Codec, Http10KeepAlive) {
  RequestHead h;
  ParseError e;
  ASSERT_EQ(parse("GET / HTTP/1.0\r\n\r\n", h, e), ParseStatus::complete);
  EXPECT_FALSE(h.keep_alive);
  ASSERT_EQ(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", h, e), ParseStatus::complete);
  EXPECT_TRUE(h.keep_alive);
}

TEST(Chunked, ValidStreamInPieces) {
  std::string body = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
  for (size_t split = 1; split < body.size() - 4; ++split) {
    ChunkedValidator v;
    size_t used = 0;
    auto r = v.feed(std::string_view(body).substr(0, split), used);
    ASSERT_EQ(r, ChunkedValidator::Result::need_more) << split;
    ASSERT_EQ(used, split);
    r = v.feed(std::string_view(body).substr(split), used);
    ASSERT_EQ(r, ChunkedValidator::Result::done) << split;
    EXPECT_EQ(split + used, body.size() - 4);
    EXPECT_EQ(v.payload_bytes(), 11u);
  }
}

TEST(Chunked, RejectsBadFraming) {
  for (const char* bad : {"x\r\n", "5 \r\nhello\r\n", "5\nhello\r\n", "5\r\nhelloXX", "-1\r\n",
                          "ffffffffffffffffff\r\n", "\r\n", "0x5\r\n"}) {
    ChunkedValidator v;
    size_t used = 0;
    EXPECT_EQ(v.feed(bad, used), ChunkedValidator::Result::error) << bad;
  }
}

TEST(Chunked, DecodesBodyAndDropsTrailers) {
  std::string out;
  EXPECT_TRUE(decode_chunked("5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n", out));
  EXPECT_EQ(out, "hello world");
}

// decode_chunked used to read sizes without a digit limit: 17 hex digits
// wrapped to a small size, and with a size of 2^64 - 20 after a 16-digit line
// `pos + size + 2` wrapped back to the start of that line, so it looped
// forever (appending the rest of the body on each turn).
TEST(Chunked, DecodeRefusesSizesNearTwoToTheSixtyFour) {
  std::string out;
  EXPECT_FALSE(decode_chunked("10000000000000005\r\nhello\r\n0\r\n\r\n", out));
  for (const char* huge : {"ffffffffffffffec\r\n", "ffffffffffffffec\r\nabc\r\n0\r\n\r\n",
                           "fffffffffffffffe\r\nabc\r\n0\r\n\r\n", "ffffffffffffffff\r\n0\r\n\r\n"}) {
    out.clear();
    EXPECT_FALSE(decode_chunked(huge, out)) << huge;
    EXPECT_LT(out.size(), 64u) << huge;
  }
  // The largest accepted size (15 digits) with a short body is incomplete, not a loop.
  out.clear();
  EXPECT_FALSE(decode_chunked("fffffffffffffff\r\nabc\r\n0\r\n\r\n", out));
}

TEST(Chunked, DecodeRefusesWhatTheValidatorRefuses) {
  for (const char* bad : {"", "\r\n\r\n", "5\r\nhello", "5\r\nhelloXX0\r\n\r\n", "5 \r\nhello\r\n0\r\n\r\n",
                          "0\r\n", "x\r\n\r\n"}) {
    std::string out;
    EXPECT_FALSE(decode_chunked(bad, out)) << bad;
  }
}

TEST(Chunked, ValidatorBoundsHugeSizes) {
  ChunkedValidator v;
  size_t used = 0;
  EXPECT_EQ(v.feed("fffffffffffffff\r\nabc", used), ChunkedValidator::Result::need_more);
  EXPECT_EQ(used, 20u);
  EXPECT_EQ(v.payload_bytes(), 3u);
  v.reset();
  EXPECT_EQ(v.feed("1000000000000000\r\n", used), ChunkedValidator::Result::error);
}

TEST(Codec, ResponseFraming) {
  ResponseHead r;
  ParseError e;
  ASSERT_EQ(parse_response("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", "GET", r, e), ParseStatus::complete);
  EXPECT_EQ(r.body, BodyKind::length);
  EXPECT_EQ(r.content_length, 3u);
  ASSERT_EQ(parse_response("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", "HEAD", r, e), ParseStatus::complete);
  EXPECT_EQ(r.body, BodyKind::none);
  ASSERT_EQ(parse_response("HTTP/1.1 204 No Content\r\n\r\n", "GET", r, e), ParseStatus::complete);
  EXPECT_EQ(r.body, BodyKind::none);
  ASSERT_EQ(parse_response("HTTP/1.1 200 OK\r\n\r\n", "GET", r, e), ParseStatus::complete);
  EXPECT_EQ(r.body, BodyKind::until_close);
  EXPECT_FALSE(r.keep_alive);
  EXPECT_EQ(parse_response("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", r, e),
            ParseStatus::error);
}
