// cloud::parse_token_answer on lifetimes a hostile or broken token endpoint
// may claim.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "cloud/access_token.h"
#include "cloud/credential_source.h"

using holdfast::cloud::kMaxLifetime;
using holdfast::cloud::parse_token_answer;

TEST(AccessToken, ALifetimeIsKeptAtMostADay) {
  const char* answers[] = {
      R"({"access_token":"tok","expires_in":9223372036854775807})",   // would overflow now + expires_in
      R"({"access_token":"tok","expires_in":18446744073709551615})",
      R"({"access_token":"tok","expires_in":1e300})",                  // not representable as an integer
      R"({"access_token":"tok","expires_in":"99999999999999999999"})",
      R"({"access_token":"tok","expires_in":-5})",
  };
  for (const char* a : answers) {
    auto t = parse_token_answer(a, 1000);
    // Either unusable, or kept no longer than a day.
    if (t.ok()) {
      EXPECT_GT(t->expires_unix, 1000) << a;
      EXPECT_LE(t->expires_unix, 1000 + kMaxLifetime) << a;
    }
  }
  auto week = parse_token_answer(R"({"access_token":"tok","expires_in":604800})", 1000);
  ASSERT_TRUE(week.ok()) << week.error();
  EXPECT_EQ(week->expires_unix, 1000 + kMaxLifetime);
  auto far = parse_token_answer(R"({"access_token":"tok","expires_on":"4000000000"})", 1000);
  ASSERT_TRUE(far.ok()) << far.error();
  EXPECT_EQ(far->expires_unix, 1000 + kMaxLifetime);
  auto hour = parse_token_answer(R"({"access_token":"tok","expires_in":3600})", 1000);
  ASSERT_TRUE(hour.ok()) << hour.error();
  EXPECT_EQ(hour->expires_unix, 4600);
}

namespace {

using holdfast::Error;
using holdfast::Result;
using holdfast::cloud::AccessToken;
using holdfast::cloud::CachedToken;

// A token source that answers from a script: tokens that are valid for
// 100 s more but due for renewal at once (obtained long ago), or failures.
class ScriptedToken : public CachedToken {
 public:
  ScriptedToken() : CachedToken("test credentials") {}
  int fetches = 0;
  bool fail = false;

 protected:
  boost::asio::awaitable<Result<AccessToken>> fetch() override {
    ++fetches;
    if (fail) co_return Error{"token endpoint unreachable"};
    AccessToken t;
    t.token = "tok" + std::to_string(fetches);
    const int64_t now = holdfast::cloud::now_unix();
    t.obtained_unix = now - 1000;
    t.expires_unix = now + 100;
    co_return t;
  }
};

Result<std::string> get(CachedToken& c, bool force = false) {
  boost::asio::io_context io;
  Result<std::string> out = Error{"not run"};
  boost::asio::co_spawn(io, [&]() -> boost::asio::awaitable<void> { out = co_await c.get(force); }, boost::asio::detached);
  io.run();
  return out;
}

}  // namespace

TEST(CachedToken, AFailedRenewalIsNotRetriedByEveryRequest) {
  ScriptedToken c;
  EXPECT_EQ(*get(c), "tok1");
  // Due for renewal (100 s left, the margin is 300 s): renewed.
  EXPECT_EQ(*get(c), "tok2");
  EXPECT_EQ(c.fetches, 2);
  // The renewal fails: the still-valid token is used, and the requests right
  // after do not each ask the endpoint again (each may wait out a timeout).
  c.fail = true;
  EXPECT_EQ(*get(c), "tok2");
  EXPECT_EQ(c.fetches, 3);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(*get(c), "tok2");
  EXPECT_EQ(c.fetches, 3);
  // A forced refresh (the store refused the token) is never held back.
  EXPECT_EQ(*get(c, true), "tok2");
  EXPECT_EQ(c.fetches, 4);
}
