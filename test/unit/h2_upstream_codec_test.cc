#include "http/h2_upstream_codec.h"

#include <gtest/gtest.h>

#include <map>

using namespace holdfast::http;

namespace {
std::multimap<std::string, std::string> as_map(const std::vector<H2Field>& v) {
  std::multimap<std::string, std::string> m;
  for (const auto& f : v) m.emplace(std::string(f.name), std::string(f.value));
  return m;
}
}  // namespace

TEST(H1ToH2Request, HeadAndChunkedBodyWithTrailers) {
  H1ToH2Request r("http");
  std::string payload;
  ASSERT_TRUE(r.feed("POST /pkg.Svc/M HTTP/1.1\r\nHost: up:50051\r\nContent-Type: application/grpc\r\n"
                     "TE: trailers\r\nConnection: keep-alive\r\nX-Forwarded-For: 1.2.3.4\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n5\r\nab",
                     payload));
  ASSERT_TRUE(r.head_done());
  EXPECT_FALSE(r.ended());
  EXPECT_EQ(payload, "ab");
  const auto& f = r.fields();
  ASSERT_GE(f.size(), 4u);
  EXPECT_EQ(f[0].name, ":method");
  EXPECT_EQ(f[0].value, "POST");
  EXPECT_EQ(f[1].value, "http");
  EXPECT_EQ(f[2].name, ":authority");
  EXPECT_EQ(f[2].value, "up:50051");
  EXPECT_EQ(f[3].name, ":path");
  EXPECT_EQ(f[3].value, "/pkg.Svc/M");
  auto m = as_map(f);
  EXPECT_EQ(m.count("connection"), 0u);
  EXPECT_EQ(m.count("transfer-encoding"), 0u);
  EXPECT_EQ(m.count("host"), 0u);
  EXPECT_EQ(m.count("te"), 1u);
  EXPECT_EQ(m.find("te")->second, "trailers");
  EXPECT_EQ(m.find("x-forwarded-for")->second, "1.2.3.4");  // lowercased name
  EXPECT_EQ(m.find("content-type")->second, "application/grpc");
  ASSERT_TRUE(r.feed("cde\r\n0\r\nGrpc-Status: 0\r\nX-Trace: Ab C\r\n\r\n", payload));
  EXPECT_TRUE(r.ended());
  EXPECT_EQ(payload, "abcde");
  auto t = as_map(r.trailers());
  EXPECT_EQ(t.find("grpc-status")->second, "0");
  EXPECT_EQ(t.find("x-trace")->second, "Ab C");  // values keep their case
}

TEST(H1ToH2Request, ContentLengthAndNoBody) {
  H1ToH2Request r("https");
  std::string payload;
  ASSERT_TRUE(r.feed("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nab", payload));
  EXPECT_TRUE(r.has_body());
  EXPECT_FALSE(r.ended());
  ASSERT_TRUE(r.feed("c", payload));
  EXPECT_TRUE(r.ended());
  EXPECT_EQ(payload, "abc");
  EXPECT_FALSE(r.feed("d", payload));  // past the body

  H1ToH2Request g("http");
  ASSERT_TRUE(g.feed("GET /x HTTP/1.1\r\nHost: h\r\n\r\n", payload));
  EXPECT_FALSE(g.has_body());
  EXPECT_TRUE(g.ended());
}

TEST(H1ToH2Request, RefusesWhatItCannotConvert) {
  std::string p;
  H1ToH2Request a("http");
  EXPECT_FALSE(a.feed("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", p));
  H1ToH2Request b("http");
  EXPECT_FALSE(b.feed("POST / HTTP/1.1\r\n\r\n", p));  // no Host: no :authority
  H1ToH2Request c("http");
  EXPECT_FALSE(c.feed("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n", p));
  H1ToH2Request d("http");
  EXPECT_FALSE(d.feed("garbage\r\n\r\n", p));
}

TEST(H2ToH1Response, ChunkedBodyWithTrailers) {
  std::string out;
  H2ToH1Response r(out);
  r.field(":status", "200");
  r.field("content-type", "application/grpc");
  r.field("content-length", "7");  // re-framed as chunked
  ASSERT_TRUE(r.end_headers(false));
  r.data(std::string(20, 'x'));
  r.field("grpc-status", "0");
  r.field("grpc-message", "ok");
  ASSERT_TRUE(r.end_headers(true));
  EXPECT_TRUE(r.done());
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ntransfer-encoding: chunked\r\n\r\n"
                 "14\r\nxxxxxxxxxxxxxxxxxxxx\r\n0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n");
  ParseError e;
  ResponseHead h;
  ASSERT_EQ(parse_response(out, "POST", h, e), ParseStatus::complete);
  EXPECT_EQ(h.body, BodyKind::chunked);
}

TEST(H2ToH1Response, TrailersOnlyAndInformational) {
  std::string out;
  H2ToH1Response r(out);
  r.field(":status", "100");
  r.field("x-early", "1");
  ASSERT_TRUE(r.end_headers(false));
  EXPECT_TRUE(out.empty());
  r.field(":status", "200");
  r.field("grpc-status", "5");
  ASSERT_TRUE(r.end_headers(true));
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\ngrpc-status: 5\r\ncontent-length: 0\r\n\r\n");
  EXPECT_TRUE(r.done());
}

TEST(H2ToH1Response, DeadlineBeforeAndAfterTheHead) {
  std::string a;
  H2ToH1Response before(a);
  before.fail(4, "Deadline Exceeded");
  EXPECT_EQ(a, "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: 4\r\n"
               "grpc-message: Deadline Exceeded\r\ncontent-length: 0\r\n\r\n");
  std::string b;
  H2ToH1Response after(b);
  after.field(":status", "200");
  after.end_headers(false);
  after.data("ab");
  after.field("grpc-status", "0");  // partial trailers are replaced
  after.fail(4, "Deadline Exceeded");
  EXPECT_TRUE(b.ends_with("2\r\nab\r\n0\r\ngrpc-status: 4\r\ngrpc-message: Deadline Exceeded\r\n\r\n")) << b;
  EXPECT_EQ(b.find("grpc-status: 0"), std::string::npos);
}

TEST(H2ToH1Response, NoStatusIsRefused) {
  std::string out;
  H2ToH1Response r(out);
  r.field(":status", "2x0");
  EXPECT_FALSE(r.end_headers(false));
}
