// OpenResty's header escapes and the head writer's backstop check.
#include "http/head_writer.h"

#include <gtest/gtest.h>

#include <string>

using namespace holdfast::http;

TEST(HeadWriter, EscapeHeaderValueAsOpenResty) {
  // 0x00-0x08, 0x0A-0x1F and DEL are encoded; HTAB, space and obs-text stay.
  EXPECT_EQ(escape_header_value("/x\r\nSet-Cookie: a=b"), "/x%0D%0ASet-Cookie: a=b");
  EXPECT_EQ(escape_header_value(std::string("a\tb\0c\x1f\x7f\xc3\xa9 %", 11)), "a\tb%00c%1F%7F\xc3\xa9 %");
  for (int c = 0; c < 256; ++c) {
    std::string in(1, static_cast<char>(c));
    bool encoded = (c < 0x20 && c != '\t') || c == 0x7f;
    EXPECT_EQ(escape_header_value(in).size(), encoded ? 3u : 1u) << c;
    EXPECT_EQ(unsafe_value_byte(escape_header_value(in)), std::string_view::npos) << c;
  }
}

TEST(HeadWriter, EscapeHeaderNameGivesAToken) {
  EXPECT_EQ(escape_header_name("X-Path"), "X-Path");
  EXPECT_EQ(escape_header_name("X Foo:bar\r\n"), "X%20Foo%3Abar%0D%0A");
  for (int c = 0; c < 256; ++c) {
    std::string out;
    HeadWriter w(out, "test");
    w.header(escape_header_name(std::string("X") + static_cast<char>(c)), "v");
    EXPECT_TRUE(w.ok()) << c << ": " << w.fault();
  }
}

// The eight-bytes-at-a-time scan against the plain definition, for every
// byte value at every position of a string longer than two words.
TEST(HeadWriter, ScanFindsEveryUnsafeByte) {
  for (int c = 0; c < 256; ++c) {
    for (size_t pos = 0; pos < 19; ++pos) {
      std::string s(19, 'a');
      s[pos] = static_cast<char>(c);
      bool bad_value = (c < 0x20 && c != '\t') || c == 0x7f;
      bool bad_target = c <= 0x20 || c == 0x7f;
      EXPECT_EQ(unsafe_value_byte(s), bad_value ? pos : std::string_view::npos) << c << "@" << pos;
      EXPECT_EQ(unsafe_target_byte(s), bad_target ? pos : std::string_view::npos) << c << "@" << pos;
    }
  }
}

TEST(HeadWriter, WritesAHead) {
  std::string out;
  HeadWriter w(out, "the client's request");
  w.request_line("GET", "/a?b=c", false);
  w.header("Host", "example.com");
  w.header("X-Tab", "a\tb");
  w.end();
  EXPECT_TRUE(w.ok());
  EXPECT_EQ(out, "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Tab: a\tb\r\n\r\n");
}

TEST(HeadWriter, RefusesAndNamesThePlugin) {
  std::string out;
  HeadWriter w(out, "the client's request");
  w.request_line("GET", "/", false);
  w.header("X-Path", "/x\r\nHost: admin.internal", "proxy-rewrite");
  w.header("X-Later", "a\x01", "response-rewrite");  // only the first fault is reported
  w.end();
  EXPECT_FALSE(w.ok());
  EXPECT_EQ(w.fault(), "header \"X-Path\" (set by proxy-rewrite): byte 0x0d at offset 2");
  EXPECT_EQ(out.find("admin.internal"), std::string::npos);  // a refused field is never appended
}

TEST(HeadWriter, RefusesTargetsMethodsNamesAndReasons) {
  auto fault_of = [](auto write) {
    std::string out;
    HeadWriter w(out, "the upstream's response");
    write(w);
    return w.fault();
  };
  EXPECT_EQ(fault_of([](HeadWriter& w) { w.request_line("GET", "/a b", false, nullptr, "proxy-rewrite"); }),
            "request target (set by proxy-rewrite): byte 0x20 at offset 2");
  EXPECT_EQ(fault_of([](HeadWriter& w) { w.request_line("GET", "/a\nb", true); }),
            "request target (from the upstream's response): byte 0x0a at offset 2");
  EXPECT_EQ(fault_of([](HeadWriter& w) { w.request_line("G T", "/", false); }),
            "request method (from the upstream's response): byte 0x20 at offset 1");
  EXPECT_EQ(fault_of([](HeadWriter& w) { w.request_line("GET", "", false); }),
            "request target (from the upstream's response): empty");
  EXPECT_EQ(fault_of([](HeadWriter& w) { w.header("X-A\r\nB", "v", "mocking"); }),
            "header name \"X-A\" (set by mocking): byte 0x0d at offset 3");
  EXPECT_EQ(fault_of([](HeadWriter& w) { w.header("", "v"); }), "header name (from the upstream's response): empty");
  EXPECT_EQ(fault_of([](HeadWriter& w) { w.status_line(200, "O\x7fK"); }),
            "status reason (from the upstream's response): byte 0x7f at offset 1");
  EXPECT_EQ(fault_of([](HeadWriter& w) { w.header("Host", std::string("a\0b", 3), "the upstream's upstream_host"); }),
            "header \"Host\" (set by the upstream's upstream_host): byte 0x00 at offset 1");
}
