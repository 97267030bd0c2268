// The server_name extension parser and SNI normalisation (src/tls/sni.h).
#include "tls/sni.h"

#include <gtest/gtest.h>

using namespace holdfast::tls;

namespace {

// list length | type 0 | name length | name
std::string ext(std::string_view name, int type = 0) {
  std::string entry;
  entry += static_cast<char>(type);
  entry += static_cast<char>(name.size() >> 8);
  entry += static_cast<char>(name.size() & 0xff);
  entry += name;
  std::string out;
  out += static_cast<char>(entry.size() >> 8);
  out += static_cast<char>(entry.size() & 0xff);
  return out + entry;
}

bool malformed(const std::string& body) {
  return parse_server_name_ext(body).kind == ServerNameExt::Kind::malformed;
}

}  // namespace

TEST(Sni, Normalise) {
  EXPECT_EQ(normalize_sni("WWW.Example.COM"), "www.example.com");
  EXPECT_EQ(normalize_sni("example.com."), "example.com");
  EXPECT_EQ(normalize_sni("example.com.."), "example.com.");  // one dot, as APISIX's "\.$"
  EXPECT_EQ(normalize_sni(""), "");
}

TEST(Sni, ParsesOneHostName) {
  auto p = parse_server_name_ext(ext("API.Example.com."));
  ASSERT_EQ(p.kind, ServerNameExt::Kind::name);
  EXPECT_EQ(p.name, "api.example.com");
  EXPECT_EQ(parse_server_name_ext(ext(std::string(255, 'a'))).name.size(), 255u);
}

TEST(Sni, RejectsMalformedExtensions) {
  EXPECT_TRUE(malformed(""));
  EXPECT_TRUE(malformed(std::string("\x00", 1)));
  EXPECT_TRUE(malformed(ext("a").substr(0, 4)));
  EXPECT_TRUE(malformed(ext("example.com") + "x"));       // bytes after the list
  std::string short_list = ext("example.com");
  short_list[1] = static_cast<char>(short_list[1] - 1);  // list length one short
  EXPECT_TRUE(malformed(short_list));
  EXPECT_TRUE(malformed(ext("example.com", 1)));          // not host_name
  EXPECT_TRUE(malformed(ext("")));                        // empty name
  EXPECT_TRUE(malformed(ext(std::string(256, 'a'))));     // over 255 bytes
  EXPECT_TRUE(malformed(ext(".")));                       // nothing left after normalising
  // Two entries: OpenSSL accepts exactly one.
  std::string two = ext("a.com");
  std::string second = ext("b.com").substr(2);
  std::string both = two.substr(2) + second;
  std::string body;
  body += static_cast<char>(both.size() >> 8);
  body += static_cast<char>(both.size() & 0xff);
  EXPECT_TRUE(malformed(body + both));
  // Control characters, spaces, NUL and non-ASCII never become a server name.
  for (std::string bad : {std::string("a\x00.com", 7), std::string("a b.com"), std::string("a\r\nb.com"),
                          std::string("a\x7f.com"), std::string("\xc3\xa9.com")})
    EXPECT_TRUE(malformed(ext(bad))) << bad;
}
