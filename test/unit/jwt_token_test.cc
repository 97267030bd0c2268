// The JSON Web Token parser of jwt-auth: three base64url parts, the first
// two JSON objects; what is wrong is named, never quoted.
#include <gtest/gtest.h>

#include "core/base64.h"
#include "plugins/jwt_token.h"

#include <limits>
#include <memory>

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

// The per-worker cache of verified tokens: keyed by token and credential,
// lapsing at the token's expiry, bounded by entries and bytes.
using holdfast::plugins::VerifiedTokens;
constexpr double kNever = std::numeric_limits<double>::infinity();

TEST(VerifiedTokens, HitsOnlyForTheCredentialThatVerified) {
  VerifiedTokens c(10, 1 << 20);
  auto key = std::make_shared<int>(1);
  auto other = std::make_shared<int>(1);
  c.insert("tok", key, kNever);
  EXPECT_TRUE(c.contains("tok", key, 100));
  EXPECT_FALSE(c.contains("tok2", key, 100));
  EXPECT_FALSE(c.contains("tok", other, 100));  // a reload's new key, even with equal content
  auto copy = key;                                 // another handle to the same credential
  EXPECT_TRUE(c.contains("tok", copy, 100));
}

TEST(VerifiedTokens, AReplacedCredentialNeverMatches) {
  VerifiedTokens c(10, 1 << 20);
  auto key = std::make_shared<int>(1);
  c.insert("tok", key, kNever);
  std::weak_ptr<int> gone = key;
  key.reset();
  ASSERT_TRUE(gone.expired());
  // A new key, possibly at the freed address, is a different owner.
  auto fresh = std::make_shared<int>(1);
  EXPECT_FALSE(c.contains("tok", fresh, 100));
}

TEST(VerifiedTokens, LapsesAtExpiry) {
  VerifiedTokens c(10, 1 << 20);
  auto key = std::make_shared<int>(1);
  c.insert("tok", key, 200);
  EXPECT_TRUE(c.contains("tok", key, 199.5));
  EXPECT_FALSE(c.contains("tok", key, 200));
  c.insert("tok", key, 300);  // verified again: its place kept, its expiry renewed
  EXPECT_TRUE(c.contains("tok", key, 250));
  EXPECT_EQ(c.size(), 1u);
}

TEST(VerifiedTokens, BoundedByEntriesOldestFirst) {
  VerifiedTokens c(3, 1 << 20);
  auto key = std::make_shared<int>(1);
  for (std::string t : {"a", "b", "c", "d"}) c.insert(t, key, kNever);
  EXPECT_EQ(c.size(), 3u);
  EXPECT_FALSE(c.contains("a", key, 0));
  EXPECT_TRUE(c.contains("b", key, 0));
  EXPECT_TRUE(c.contains("d", key, 0));
}

TEST(VerifiedTokens, BoundedByBytes) {
  VerifiedTokens c(100, 10);
  auto key = std::make_shared<int>(1);
  c.insert("aaaa", key, kNever);
  c.insert("bbbb", key, kNever);
  c.insert("cccc", key, kNever);  // 12 bytes would exceed 10: "aaaa" leaves
  EXPECT_LE(c.bytes(), 10u);
  EXPECT_FALSE(c.contains("aaaa", key, 0));
  EXPECT_TRUE(c.contains("cccc", key, 0));
  c.insert(std::string(11, 'x'), key, kNever);  // larger than the whole bound: not kept
  EXPECT_FALSE(c.contains(std::string(11, 'x'), key, 0));
  EXPECT_TRUE(c.contains("cccc", key, 0));
}
