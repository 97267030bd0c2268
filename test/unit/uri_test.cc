// The encoders a rewritten path goes through before it is sent (APISIX's
// uri_safe_encode and escape_uri_control_chars), and normalize_path.
#include "http/uri.h"

#include <gtest/gtest.h>

using namespace holdfast::http;
using namespace std::string_literals;

TEST(Uri, SafeEncodeMatchesNginxEscapeUri) {
  // The issue's smuggling path, decoded as $uri and re-encoded.
  EXPECT_EQ(uri_safe_encode("/x\r\nHost: admin.internal\r\n\r\nGET /poisoned"),
            "/x%0D%0AHost:%20admin.internal%0D%0A%0D%0AGET%20/poisoned");
  // nginx's NGX_ESCAPE_URI set: " ", '"', '#', '%', '<', '>', '?', '\', '^', '`', '{', '|', '}', DEL, >= 0x80.
  EXPECT_EQ(uri_safe_encode("/a b\"#%<>?\\^`{|}\x7f"), "/a%20b%22%23%25%3C%3E%3F%5C%5E%60%7B%7C%7D%7F");
  EXPECT_EQ(uri_safe_encode("/caf\xc3\xa9"), "/caf%C3%A9");
  EXPECT_EQ(uri_safe_encode(std::string("/\0\x01\x1f", 4)), "/%00%01%1F");
  // RFC 3986 unreserved, sub-delims and the other gen-delims stay.
  const std::string kept = "/AZaz09-._~!$&'()*+,;=:@[]";
  EXPECT_EQ(uri_safe_encode(kept), kept);
}

TEST(Uri, EscapeControlCharsKeepsQueryDelimiters) {
  EXPECT_EQ(escape_uri_control_chars("?a=1&b=x\r\ny z%"), "?a=1&b=x%0D%0Ay z%");
  EXPECT_EQ(escape_uri_control_chars(std::string("\0\t\x1f\x7f\x80", 5)), "%00%09%1F%7F\x80");
  for (int c = 0x20; c < 0x7f; ++c) {
    std::string s(1, static_cast<char>(c));
    EXPECT_EQ(escape_uri_control_chars(s), s) << c;
  }
}

TEST(Uri, PercentEscapeRoundTripsThroughNormalize) {
  // What uri_safe_encode produces decodes back to the same $uri.
  std::string decoded = "/a b/%/\r\n/\xc3\xa9?#";
  auto again = normalize_path(uri_safe_encode(decoded));
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, decoded);
}

TEST(NormalizePath, DecodesMergesAndResolves) {
  EXPECT_EQ(normalize_path("/a//b/./c/../d%20e/"), "/a/b/d e/");
  EXPECT_EQ(normalize_path("/a/%2e%2e/b"), "/b");
  EXPECT_EQ(normalize_path("/x/.."), "/");
  EXPECT_EQ(normalize_path("*"), "*");
  EXPECT_EQ(normalize_path("/../a"), std::nullopt);
  EXPECT_EQ(normalize_path("/a%2"), std::nullopt);
  EXPECT_EQ(normalize_path("a"), std::nullopt);
}

// A NUL was refused only when percent-encoded; a raw one (found by
// fuzz/path) went into $uri.
TEST(NormalizePath, RefusesNulRawOrEncoded) {
  EXPECT_EQ(normalize_path("/a%00b"), std::nullopt);
  EXPECT_EQ(normalize_path("/a\0b"s), std::nullopt);
  EXPECT_EQ(normalize_path("/\0\0"s "00b"), std::nullopt);
}

// APISIX init.lua build_match_uri_keep_encoded_slash: %2F stays encoded only
// when a plain decode of the raw path is exactly $uri.
TEST(MatchUriKeepEncodedSlash, KeepsSlashesEncodedWhenNothingWasNormalised) {
  EXPECT_EQ(match_uri_keep_encoded_slash("/v1/te%2Fst/list", "/v1/te/st/list"), "/v1/te%2Fst/list");
  EXPECT_EQ(match_uri_keep_encoded_slash("/v1/te%2fst/list", "/v1/te/st/list"), "/v1/te%2Fst/list");
  EXPECT_EQ(match_uri_keep_encoded_slash("/a%2Fb%41/", "/a/bA/"), "/a%2FbA/");
}

TEST(MatchUriKeepEncodedSlash, FallsBackWhenNginxNormalised) {
  // Dot segments, merged slashes: $uri differs from the plain decode.
  EXPECT_EQ(match_uri_keep_encoded_slash("/x%2Fy/../..", "/"), std::nullopt);
  EXPECT_EQ(match_uri_keep_encoded_slash("/a%2Fb/%2e%2e/%2e%2e", "/"), std::nullopt);
  EXPECT_EQ(match_uri_keep_encoded_slash("//a%2Fb", "/a/b"), std::nullopt);
  EXPECT_EQ(match_uri_keep_encoded_slash("/a%2Fb/%zz", "/a/b/%zz"), std::nullopt);
  EXPECT_EQ(match_uri_keep_encoded_slash("/a%2", "/a%2"), std::nullopt);
}
