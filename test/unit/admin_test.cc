// Admin API building blocks: PATCH merge rules and resource validation.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "admin/json_patch.h"
#include "admin/resource_check.h"

namespace json = boost::json;
using namespace holdfast::admin;

namespace {
json::object obj(const char* text) { return json::parse(text).as_object(); }

std::string check(const char* res, const char* text, std::vector<Reference>* refs = nullptr) {
  CheckOptions opts;
  auto r = check_resource(*find_resource(res), obj(text), opts);
  if (!r) return r.error();
  if (refs) *refs = *r;
  return "";
}
}  // namespace

TEST(AdminPatch, MergeRules) {
  auto target = obj(R"({"a":{"x":1,"y":2},"arr":[1,2,3],"gone":true,"keep":"k"})");
  merge_patch(target, obj(R"({"a":{"y":null,"z":3},"arr":[9],"gone":null,"new":{"n":null,"m":1}})"));
  EXPECT_EQ(json::value(target), json::parse(R"({"a":{"x":1,"z":3},"arr":[9],"keep":"k","new":{"m":1}})"));
}

TEST(AdminPatch, SubPath) {
  auto v = obj(R"({"uri":"/a","upstream":{"nodes":{"h:1":1}}})");
  ASSERT_TRUE(patch_sub_path(v, "upstream/nodes", json::parse(R"({"h:2":3})")).ok());
  ASSERT_TRUE(patch_sub_path(v, "plugins/cors", json::object()).ok());  // intermediates are created
  ASSERT_TRUE(patch_sub_path(v, "uri", nullptr).ok());                  // null deletes
  EXPECT_EQ(json::value(v), json::parse(R"({"upstream":{"nodes":{"h:2":3}},"plugins":{"cors":{}}})"));
  v["uri"] = "/b";
  auto st = patch_sub_path(v, "uri/x/y", 1);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error(), "invalid sub-path: /uri");
}

TEST(AdminCheck, RoutesCollectReferencesAndCompilePlugins) {
  std::vector<Reference> refs;
  EXPECT_EQ(check("routes", R"({"id":"1","uri":"/","upstream_id":"u1","service_id":2,"plugin_config_id":"p"})", &refs), "");
  ASSERT_EQ(refs.size(), 3u);
  EXPECT_EQ(refs[0].dir, "upstreams");
  EXPECT_EQ(refs[1].id, "2");
  EXPECT_EQ(refs[2].label, "plugin config");
  EXPECT_EQ(check("routes", R"({"id":"1","uri":"/","plugins":{"nope":{}}})"), "unknown plugin [nope]");
  EXPECT_EQ(check("routes", R"({"id":"1","uri":"/","host":"a","hosts":["b"],"upstream_id":"1"})"),
            "only one of host or hosts is allowed");
  EXPECT_EQ(check("routes", R"({"id":"1","uris":["/"],"uri":"/","upstream_id":"1"})").rfind("invalid configuration: ", 0), 0u);
}

TEST(AdminCheck, ConsumersAndCredentials) {
  EXPECT_EQ(check("consumers", R"({"username":"jack","plugins":{"key-auth":{"key":"k"},"limit-count":{"count":1,"time_window":1}}})"), "");
  EXPECT_EQ(check("consumers", R"({"username":"jack","plugins":{"key-auth":{}}})"),
            "invalid plugins configuration: failed to check the configuration of plugin key-auth err: property \"key\" is required");
  EXPECT_EQ(check("consumers", R"({"username":"a b"})").rfind("invalid configuration: property \"username\"", 0), 0u);
  EXPECT_EQ(check("credentials", R"({"id":"c1","plugins":{"key-auth":{"key":"k"}}})"), "");
  EXPECT_EQ(check("credentials", R"({"id":"c1","plugins":{"cors":{}}})"), "only supports auth type plugins in consumer credential");
}

TEST(AdminCheck, SmallValidators) {
  EXPECT_EQ(check("consumer_groups", R"({"id":"g"})"), "invalid configuration: property \"plugins\" is required");
  EXPECT_EQ(check("protos", R"({"id":"p","content":"x"})"), "");
  EXPECT_EQ(check("plugin_metadata", R"({"id":"cors","anything":1})"), "");
  EXPECT_EQ(check("plugin_metadata", R"({"id":"nope"})"), "invalid plugin name");
  // limit-count and cors have metadata schemas (APISIX's).
  EXPECT_EQ(check("plugin_metadata", R"({"id":"limit-count","limit_header":"X-L"})"), "");
  EXPECT_NE(check("plugin_metadata", R"({"id":"limit-count","limit_header":1})").find("invalid configuration"), std::string::npos);
  EXPECT_EQ(check("plugin_metadata", R"({"id":"cors","allow_origins":{"a":"http://x.test,https://y.test","b":"**"}})"), "");
  EXPECT_NE(check("plugin_metadata", R"({"id":"cors","allow_origins":{"a":"x.test"}})"), "");
  EXPECT_NE(check("plugin_metadata", R"({"id":"cors","allow_origins":{"a":"http://x,"}})"), "");
  EXPECT_EQ(check("stream_routes", R"({"id":"s","server_addr":"x"})"),
            "invalid configuration: property \"server_addr\" validation failed: object matches none of the required");
  EXPECT_EQ(check("ssls", R"({"id":"s","snis":["a"]})"),
            "invalid configuration: property \"cert\" is required");
}

TEST(AdminCheck, SniPatternsAsApisixHostDef) {
  // ^\*$|^\*?[0-9a-zA-Z-._\[\]:]+$ : "*" alone is valid (it serves every name).
  for (const char* ok : {R"(["*"])", R"(["*.a.com","a.com"])", R"(["*a.com"])", R"(["[::1]"])"})
    EXPECT_EQ(check("ssls", (std::string(R"({"id":"s","snis":)") + ok + "}").c_str()),
              "invalid configuration: property \"cert\" is required")
        << ok;
  for (const char* bad : {R"(["**"])", R"(["a*.com"])", R"(["a b"])", R"([""])"})
    EXPECT_NE(check("ssls", (std::string(R"({"id":"s","snis":)") + bad + "}").c_str()).find("failed to match pattern"),
              std::string::npos)
        << bad;
}

TEST(AdminCheck, DeleteRules) {
  auto rules = delete_rules(*find_resource("upstreams"));
  ASSERT_GE(rules.size(), 2u);
  EXPECT_STREQ(rules[0].field, "upstream_id");
  EXPECT_TRUE(delete_rules(*find_resource("routes")).empty());
  EXPECT_EQ(find_resource("nothing"), nullptr);
}
