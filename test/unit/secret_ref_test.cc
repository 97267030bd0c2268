// Mirrors src/core/secret_ref.cc: $env:// and $secret:// references.
#include "core/secret_ref.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cstdlib>

using namespace holdfast;
namespace json = boost::json;

TEST(SecretRef, RecognisesReferencesAsApisix) {
  EXPECT_TRUE(secret::is_reference("$env://A"));
  EXPECT_TRUE(secret::is_reference("$ENV://A"));  // APISIX compares the prefix uppercased
  EXPECT_TRUE(secret::is_reference("$secret://vault/1/k"));
  EXPECT_FALSE(secret::is_reference("$SECRET://vault/1/k"));
  EXPECT_FALSE(secret::is_reference("env://A"));
  EXPECT_FALSE(secret::is_reference("x$env://A"));
  EXPECT_TRUE(secret::has_reference(json::parse(R"({"a":[1,{"b":"$env://X"}]})")));
  EXPECT_FALSE(secret::has_reference(json::parse(R"({"a":[1,{"b":"$env:/X"}]})")));
}

TEST(SecretRef, ResolvesEnvAndJsonKeys) {
  ::setenv("HF_UNIT_PLAIN", "plain-value", 1);
  ::setenv("HF_UNIT_JSON", R"({"user":"u1","n":7})", 1);
  ::setenv("HF_UNIT_EMPTY", "", 1);
  json::value v = json::parse(
      R"({"a":"$env://HF_UNIT_PLAIN","b":["$env://HF_UNIT_JSON/user"],"c":"$env://HF_UNIT_JSON/n","d":"$env://HF_UNIT_EMPTY","e":"keep"})");
  ASSERT_TRUE(secret::resolve(v).ok());
  EXPECT_EQ(json::serialize(v), R"({"a":"plain-value","b":["u1"],"c":7,"d":"","e":"keep"})");
}

TEST(SecretRef, FailsClosedNamingTheReferenceNeverTheValue) {
  ::unsetenv("HF_UNIT_UNSET");
  ::setenv("HF_UNIT_NOTJSON", "hunter2", 1);
  json::value v = json::parse(R"({"k":"$env://HF_UNIT_UNSET"})");
  auto st = secret::resolve(v);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error(), "secret reference $env://HF_UNIT_UNSET: environment variable HF_UNIT_UNSET is not set");
  v = json::parse(R"({"k":"$env://HF_UNIT_NOTJSON/key"})");
  st = secret::resolve(v);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().find("hunter2"), std::string::npos);
  json::object plugins = json::parse(R"({"key-auth":{"key":"$secret://aws/1/jack/key"}})").as_object();
  st = secret::resolve_plugins(plugins);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error(), "plugin key-auth: secret reference $secret://aws/1/jack/key: secret manager aws is not "
                        "supported (only $env:// references are)");
}
