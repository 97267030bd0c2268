// plugins::screen_fields, the one place that decides what happens to a
// plugin field Holdfast does not implement (#11 item 9), and compile_chain's
// use of it for the built-in plugins.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "plugins/common.h"

namespace json = boost::json;
using holdfast::plugins::FieldRules;
using holdfast::plugins::screen_fields;

namespace {
const FieldRules kItem{.implemented = {"a"}};
const FieldRules kRules{.implemented = {"keep", "obj", "list"},
                        .ignored = {"harmless"},
                        .refused = {"changes"},
                        .nested = {{"obj", &kItem}, {"list", &kItem}},
                        .min_properties = 1};

json::object obj(const char* text) { return json::parse(text).as_object(); }
}  // namespace

TEST(PluginFields, UnknownAndIgnoredFieldsAreDroppedAndNamed) {
  std::vector<std::string> w;
  auto out = screen_fields(obj(R"({"keep":1,"harmless":2,"typo":3,"obj":{"a":1,"b":2},"list":[{"a":1},{"c":1}]})"),
                           kRules, w);
  ASSERT_TRUE(out.ok()) << out.error();
  EXPECT_EQ(json::serialize(*out), R"({"keep":1,"obj":{"a":1},"list":[{"a":1},{}]})");
  ASSERT_EQ(w.size(), 4u);
  EXPECT_EQ(w[0], "field harmless is not implemented by Holdfast (ignored: it changes nothing here)");
  EXPECT_EQ(w[1], "unknown field typo (ignored, as APISIX ignores it)");
  EXPECT_EQ(w[2], "unknown field obj.b (ignored, as APISIX ignores it)");
  EXPECT_EQ(w[3], "unknown field list[2].c (ignored, as APISIX ignores it)");
}

TEST(PluginFields, BehaviourChangingFieldIsRefusedByName) {
  std::vector<std::string> w;
  auto out = screen_fields(obj(R"({"keep":1,"changes":true})"), kRules, w);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error(), "field changes is not supported by Holdfast (ignoring it would change the behaviour)");
}

TEST(PluginFields, ClosedSchemaAndMinPropertiesAsApisix) {
  std::vector<std::string> w;
  const FieldRules closed{.implemented = {"a"}, .closed = true};
  auto out = screen_fields(obj(R"({"a":1,"b":2})"), closed, w);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error(), "additional properties forbidden, found b");
  auto empty = screen_fields(obj("{}"), kRules, w);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error(), "expect object to have at least 1 properties");
  // Counted on what was written: an unknown field alone satisfies it.
  EXPECT_TRUE(screen_fields(obj(R"({"typo":1})"), kRules, w).ok());
}

TEST(PluginFields, NamesWithControlCharactersAreQuoted) {
  std::vector<std::string> w;
  ASSERT_TRUE(screen_fields(obj(R"({"a\nb":1})"), kRules, w).ok());
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0], R"(unknown field "a\nb" (ignored, as APISIX ignores it))");
}

TEST(PluginFields, CompileChainWarnsWithScopeAndKeepsTheRest) {
  std::vector<std::string> w;
  auto chain = holdfast::plugins::compile_chain(obj(R"({"cors":{"allow_origins":"**","madx_age":5}})"), {},
                                                "routes/1", &w);
  ASSERT_TRUE(chain.ok()) << chain.error();
  EXPECT_EQ(chain->entries.size(), 1u);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0], "routes/1: plugin cors: unknown field madx_age (ignored, as APISIX ignores it)");
  // A wrong type in a known field is still refused, as APISIX refuses it.
  auto bad = holdfast::plugins::compile_chain(obj(R"({"cors":{"max_age":"5","madx_age":5}})"), {}, "routes/1", &w);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find("property \"max_age\" validation failed"), std::string::npos);
}

TEST(PluginFields, RedisSettingsOfTheLocalLimitersAreNamedAsIgnored) {
  // Only the local policy runs here: redis_* changes nothing, and says so.
  for (const char* conf : {R"({"limit-req":{"rate":1,"burst":0,"key":"remote_addr","redis_host":"r"}})",
                           R"({"limit-conn":{"conn":1,"burst":0,"default_conn_delay":0.1,"key":"remote_addr",
                               "redis_host":"r"}})"}) {
    std::vector<std::string> w;
    auto chain = holdfast::plugins::compile_chain(obj(conf), {}, "routes/1", &w);
    ASSERT_TRUE(chain.ok()) << chain.error();
    ASSERT_EQ(w.size(), 1u) << conf;
    EXPECT_NE(w[0].find("field redis_host is not implemented by Holdfast (ignored"), std::string::npos) << w[0];
  }
}

TEST(PluginFields, MetaIsClosedAndPreFunctionRefused) {
  // APISIX's plugin_injected_schema: additionalProperties = false on _meta.
  auto bad = holdfast::plugins::compile_chain(obj(R"({"cors":{"_meta":{"priorty":1}}})"), {}, "routes/1");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error(), "failed to check the configuration of plugin cors err: property \"_meta\" validation failed: "
                         "additional properties forbidden, found priorty");
  auto lua = holdfast::plugins::compile_chain(obj(R"({"cors":{"_meta":{"pre_function":"return"}}})"), {}, "routes/1");
  ASSERT_FALSE(lua.ok());
  EXPECT_NE(lua.error().find("field pre_function is not supported by Holdfast"), std::string::npos) << lua.error();
}

TEST(PluginFields, MetadataFieldsAreScreenedToo) {
  std::vector<std::string> w;
  auto cors = holdfast::plugins::compile_metadata(obj(R"({"id":"cors","allow_origins":{},"extra":1})"), {}, &w);
  ASSERT_TRUE(cors.ok()) << cors.error();
  // request-id reads no metadata: APISIX accepts any object and ignores it.
  auto rid = holdfast::plugins::compile_metadata(obj(R"({"id":"request-id","anything":{"free":"form"}})"), {}, &w);
  ASSERT_TRUE(rid.ok()) << rid.error();
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[0], "plugin_metadata/cors: unknown field extra (ignored, as APISIX ignores it)");
  EXPECT_EQ(w[1], "plugin_metadata/request-id: unknown field anything (ignored, as APISIX ignores it)");
}
