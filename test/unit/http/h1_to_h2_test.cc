// The HTTP/1.1 -> HTTP/2 response translation of downstream HTTP/2 streams.
#include "http/h1_to_h2.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace holdfast::http;

namespace {

struct Rec : H1ToH2::Sink {
  int status = 0;
  bool has_body = false;
  std::vector<std::pair<std::string, std::string>> fields, trailer_fields;
  std::string body;
  int ends = 0;
  void head(int s, const std::vector<Header>& f, bool b) override {
    status = s;
    has_body = b;
    for (const auto& h : f) fields.emplace_back(h.name, h.value);
  }
  void data(const char* p, size_t n) override { body.append(p, n); }
  void trailers(const std::vector<Header>& f) override {
    for (const auto& h : f) trailer_fields.emplace_back(h.name, h.value);
  }
  void end() override { ++ends; }
  bool has(const std::string& name) const {
    for (const auto& f : fields)
      if (f.first == name) return true;
    return false;
  }
};

// Feeds `in` one byte at a time, as the worst split of writes.
bool feed_bytewise(H1ToH2& c, std::string_view in, Rec& r) {
  for (char ch : in)
    if (!c.feed(std::string_view(&ch, 1), r)) return false;
  return true;
}

}  // namespace

TEST(H1ToH2, ContentLengthBodyAndConnectionFieldsDropped) {
  H1ToH2 c;
  c.reset("GET");
  Rec r;
  ASSERT_TRUE(c.feed("HTTP/1.1 200 OK\r\nServer: holdfast\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n"
                     "Content-Length: 5\r\nX-Up: A\r\n\r\nhel", r));
  ASSERT_TRUE(c.feed("lo", r));
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.has_body);
  EXPECT_EQ(r.body, "hello");
  EXPECT_EQ(r.ends, 1);
  EXPECT_TRUE(c.done());
  EXPECT_TRUE(r.has("server"));
  EXPECT_TRUE(r.has("x-up"));  // lowercased
  EXPECT_TRUE(r.has("content-length"));
  EXPECT_FALSE(r.has("connection"));
  EXPECT_FALSE(r.has("keep-alive"));
  // Bytes past the end are an error, not a second response.
  EXPECT_FALSE(c.feed("x", r));
}

TEST(H1ToH2, ChunkedBodyWithTrailersSplitAnywhere) {
  const std::string resp =
      "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nGrpc-Status: 0\r\ngrpc-message: ok \r\n\r\n";
  H1ToH2 c;
  c.reset("POST");
  Rec r;
  ASSERT_TRUE(feed_bytewise(c, resp, r));
  EXPECT_EQ(r.body, "hello world");
  EXPECT_FALSE(r.has("transfer-encoding"));
  ASSERT_EQ(r.trailer_fields.size(), 2u);
  EXPECT_EQ(r.trailer_fields[0], (std::pair<std::string, std::string>{"grpc-status", "0"}));
  EXPECT_EQ(r.trailer_fields[1], (std::pair<std::string, std::string>{"grpc-message", "ok"}));
  EXPECT_EQ(r.ends, 1);
}

TEST(H1ToH2, ChunkedWithoutTrailers) {
  H1ToH2 c;
  c.reset("GET");
  Rec r;
  ASSERT_TRUE(c.feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", r));
  EXPECT_EQ(r.body, "abc");
  EXPECT_TRUE(r.trailer_fields.empty());
  EXPECT_EQ(r.ends, 1);
}

TEST(H1ToH2, InterimHeadSkippedAndNoBodyCases) {
  H1ToH2 c;
  c.reset("POST");
  Rec r;
  ASSERT_TRUE(c.feed("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nServer: x\r\n\r\n", r));
  EXPECT_EQ(r.status, 204);
  EXPECT_FALSE(r.has_body);
  EXPECT_EQ(r.ends, 1);
  H1ToH2 h;
  h.reset("HEAD");
  Rec rh;
  ASSERT_TRUE(h.feed("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", rh));
  EXPECT_FALSE(rh.has_body);
  EXPECT_EQ(rh.ends, 1);
}

TEST(H1ToH2, CloseDelimitedEndsAtFinish) {
  H1ToH2 c;
  c.reset("GET");
  Rec r;
  ASSERT_TRUE(c.feed("HTTP/1.0 200 OK\r\n\r\nsome", r));
  ASSERT_TRUE(c.feed(" bytes", r));
  EXPECT_EQ(r.ends, 0);
  EXPECT_TRUE(c.finish(r));
  EXPECT_EQ(r.body, "some bytes");
  EXPECT_EQ(r.ends, 1);
}

TEST(H1ToH2, IncompleteOrInvalidResponsesFail) {
  {
    H1ToH2 c;
    c.reset("GET");
    Rec r;
    ASSERT_TRUE(c.feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", r));
    EXPECT_FALSE(c.finish(r));  // short body: the stream is reset
  }
  {
    H1ToH2 c;
    c.reset("GET");
    Rec r;
    EXPECT_FALSE(c.feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", r));
  }
  {
    H1ToH2 c;
    c.reset("GET");
    Rec r;
    EXPECT_FALSE(c.feed("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", r));
  }
  {
    H1ToH2 c;
    c.reset("GET");
    Rec r;
    EXPECT_FALSE(c.finish(r));  // nothing written
  }
  {
    // A control character in a trailer value is not passed on.
    H1ToH2 c;
    c.reset("GET");
    Rec r;
    EXPECT_FALSE(c.feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nx: a\x01z\r\n\r\n", r));
  }
}
