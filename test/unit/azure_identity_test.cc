#include <gtest/gtest.h>

#include "cloud/azure/identity.h"

using holdfast::azure::parse_token_answer;

TEST(AzureIdentity, EntraAnswerExpiresInNumber) {
  auto t = parse_token_answer(R"({"token_type":"Bearer","expires_in":3599,"access_token":"eyJ.a.b"})", 1000);
  ASSERT_TRUE(t.ok()) << t.error();
  EXPECT_EQ(t->token, "eyJ.a.b");
  EXPECT_EQ(t->expires_unix, 4599);
  EXPECT_EQ(t->obtained_unix, 1000);
}

TEST(AzureIdentity, ImdsAnswerStringsAndExpiresOnWins) {
  auto t = parse_token_answer(
      R"({"access_token":"tok","expires_in":"3599","expires_on":"5000","resource":"https://storage.azure.com/","token_type":"Bearer"})",
      1000);
  ASSERT_TRUE(t.ok()) << t.error();
  EXPECT_EQ(t->expires_unix, 5000);
  // An expires_on in the past is not believed; expires_in is.
  auto u = parse_token_answer(R"({"access_token":"tok","expires_in":"60","expires_on":"10"})", 1000);
  ASSERT_TRUE(u.ok()) << u.error();
  EXPECT_EQ(u->expires_unix, 1060);
}

TEST(AzureIdentity, RefusesWhatCannotBeUsed) {
  const char* bad[] = {
      "not json",
      R"({"expires_in":60})",                                  // no token
      R"({"access_token":"","expires_in":60})",
      R"({"access_token":"a b","expires_in":60})",             // would split the header
      "{\"access_token\":\"a\\r\\nX-Evil: 1\",\"expires_in\":60}",
      R"({"access_token":"tok"})",                             // no lifetime
      R"({"access_token":"tok","expires_in":"12x"})",
      R"({"access_token":"tok","expires_in":60,"token_type":"MAC"})",
  };
  for (const char* b : bad) {
    auto t = parse_token_answer(b, 1000);
    EXPECT_FALSE(t.ok()) << b;
    if (!t.ok()) {
      EXPECT_EQ(t.error().find("X-Evil"), std::string::npos) << "never echoed: " << t.error();
    }
  }
}
