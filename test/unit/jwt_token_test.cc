// The JSON Web Token parser of jwt-auth: three base64url parts, the first
// two JSON objects; what is wrong is named, never quoted.
#include <gtest/gtest.h>

#include "core/base64.h"
#include "plugins/jwt_token.h"

using holdfast::base64url_encode;
using holdfast::plugins::parse_jwt;

TEST(JwtToken, SplitsAndDecodes) {
  std::string h = base64url_encode(R"({"alg":"HS256","typ":"JWT"})");
  std::string p = base64url_encode(R"({"key":"k","exp":5})");
  std::string token = h + "." + p + ".c2ln";
  auto t = parse_jwt(token);
  ASSERT_TRUE(t.ok()) << t.error();
  EXPECT_EQ(t->alg, "HS256");
  EXPECT_EQ(t->payload.at("key").as_string(), "k");
  EXPECT_EQ(t->signing_input, h + "." + p);
  EXPECT_EQ(t->signature, "c2ln");
}

TEST(JwtToken, RefusesWhatIsNotACompactJws) {
  std::string h = base64url_encode(R"({"alg":"HS256"})");
  std::string p = base64url_encode(R"({"key":"k"})");
  EXPECT_EQ(parse_jwt("").error(), "invalid jwt string");
  EXPECT_EQ(parse_jwt(h + "." + p).error(), "invalid jwt string");
  EXPECT_EQ(parse_jwt(h + "." + p + ".s.x").error(), "invalid jwt string");
  EXPECT_EQ(parse_jwt("!." + p + ".s").error(), "invalid header");
  EXPECT_EQ(parse_jwt(base64url_encode("[1]") + "." + p + ".s").error(), "invalid header");
  EXPECT_EQ(parse_jwt(h + "." + base64url_encode("\"str\"") + ".s").error(), "invalid payload");
  EXPECT_EQ(parse_jwt(h + "." + p + "." + std::string(70000, 'A')).error(), "invalid jwt string");
  auto no_alg = parse_jwt(base64url_encode(R"({"alg":5})") + "." + p + ".");
  ASSERT_TRUE(no_alg.ok());
  EXPECT_EQ(no_alg->alg, "");
}
