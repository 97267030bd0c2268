// hmac-auth's HTTP Signature pieces: the Authorization parameters as
// APISIX's Lua patterns read them, the signing string, and nginx's Date
// parser.
#include <gtest/gtest.h>

#include "plugins/hmac_signature.h"

using namespace holdfast::plugins::hmac;

TEST(HmacSignature, ParsesTheParameters) {
  auto p = parse_signature(
      R"(Signature keyId="my-key",algorithm="hmac-sha256",headers="@request-target date x-custom",signature="c2ln")");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->key_id, "my-key");
  EXPECT_EQ(p->algorithm, "hmac-sha256");
  EXPECT_EQ(p->signature, "c2ln");
  ASSERT_TRUE(p->headers);
  EXPECT_EQ(*p->headers, (std::vector<std::string>{"@request-target", "date", "x-custom"}));
}

TEST(HmacSignature, ReadsFieldsAsTheLuaPatternDoes) {
  // Spaces around fields, an unknown field, a later value winning, a name
  // inside other characters, a field without its closing quote, and
  // repeated spaces in `headers`.
  auto p = parse_signature(
      R"(Signature  keyId="a" , foo="x",keyId="b", x-algorithm="hmac-sha1",signature="s,headers="date  host ")");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->key_id, "b");
  EXPECT_EQ(p->algorithm, "hmac-sha1");
  EXPECT_FALSE(p->signature);  // `signature="s` has no closing quote before the comma
  ASSERT_TRUE(p->headers);
  EXPECT_EQ(*p->headers, (std::vector<std::string>{"date", "host"}));
  // An empty value is a value (Lua's "" is true).
  auto e = parse_signature(R"(Signature keyId="",signature="")");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->key_id, "");
  EXPECT_FALSE(e->algorithm);
  EXPECT_FALSE(e->headers);
}

TEST(HmacSignature, NeedsTheSignaturePrefix) {
  EXPECT_FALSE(parse_signature("Basic dXNlcjpwYXNz"));
  EXPECT_FALSE(parse_signature("signature keyId=\"a\""));  // case as written
  EXPECT_FALSE(parse_signature(""));
  auto bare = parse_signature("Signature");
  ASSERT_TRUE(bare);
  EXPECT_FALSE(bare->key_id);
}

TEST(HmacSignature, SigningString) {
  SignatureParams p;
  p.key_id = "k";
  p.headers = std::vector<std::string>{"@request-target", "date", "x-missing", "x-custom"};
  auto lookup = [](std::string_view name) -> std::optional<std::string> {
    if (name == "date") return "Thu, 24 Sep 2020 06:39:52 GMT";
    if (name == "x-custom") return "v";
    return std::nullopt;
  };
  EXPECT_EQ(signing_string(p, "POST", "/hello?a=1", lookup),
            "k\nPOST /hello?a=1\ndate: Thu, 24 Sep 2020 06:39:52 GMT\nx-custom: v\n");
  EXPECT_EQ(signing_string(p, "GET", "", lookup).substr(0, 8), "k\nGET /\n");
  p.headers.reset();
  EXPECT_EQ(signing_string(p, "GET", "/", lookup), "k\n");
}

TEST(HmacSignature, ParsesHttpTimeAsNginx) {
  // date -u -d '2020-09-24 06:39:52' +%s
  EXPECT_EQ(parse_http_time("Thu, 24 Sep 2020 06:39:52 GMT"), 1600929592);
  EXPECT_EQ(parse_http_time("Thursday, 24-Sep-20 06:39:52 GMT"), 1600929592);
  EXPECT_EQ(parse_http_time("Thu Sep 24 06:39:52 2020"), 1600929592);
  EXPECT_EQ(parse_http_time("Sun Nov  6 08:49:37 1994"), 784111777);
  EXPECT_EQ(parse_http_time("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
  EXPECT_EQ(parse_http_time("Tue, 29 Feb 2028 12:00:00 GMT"), 1835438400);
  EXPECT_FALSE(parse_http_time(""));
  EXPECT_FALSE(parse_http_time("2020-09-24T06:39:52Z"));
  EXPECT_FALSE(parse_http_time("Thu, 24 Spt 2020 06:39:52 GMT"));
  EXPECT_FALSE(parse_http_time("Thu, 24 Sep 2020 24:39:52 GMT"));
  EXPECT_FALSE(parse_http_time("Thu, 31 Sep 2020 06:39:52 GMT"));
  EXPECT_FALSE(parse_http_time("Mon, 29 Feb 2100 06:39:52 GMT"));
  EXPECT_FALSE(parse_http_time("Thu, 24 Sep 2020"));
}
