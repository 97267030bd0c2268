// The configuration input budgets (src/core/budgets.h) and the YAML->JSON
// conversion that enforces them.
#include "core/budgets.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>

#include "core/yaml_json.h"

using namespace holdfast;
namespace json = boost::json;

namespace {

// `levels` nested arrays around a number: [[[1]]] has depth 3.
std::string nested_json(size_t levels) { return std::string(levels, '[') + "1" + std::string(levels, ']'); }

// A route-like object whose nesting is `levels` (the object itself counts one).
std::string deep_route(size_t levels) { return "{\"id\":\"1\",\"vars\":" + nested_json(levels - 1) + "}"; }

// 9 levels x 9 aliases: under 1 KiB, 9^9 (387 million) leaves when expanded.
std::string alias_bomb() {
  std::string y = "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n";
  for (int i = 1; i <= 9; ++i) {
    std::string prev = "*a" + std::to_string(i - 1);
    y += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 9; ++j) y += (j ? "," : "") + prev;
    y += "]\n";
  }
  return y;
}

}  // namespace

TEST(Budgets, ResourceDepthLimitIsExact) {
  EXPECT_TRUE(budgets::parse_json(deep_route(64), budgets::resource()).ok());
  auto r = budgets::parse_json(deep_route(65), budgets::resource());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("nested deeper than 64 levels"), std::string::npos) << r.error();
  auto v = budgets::parse_json(deep_route(64), budgets::resource());
  EXPECT_EQ(budgets::depth(*v), 64u);
  EXPECT_TRUE(budgets::check_resource_depth(*v).ok());
  EXPECT_TRUE(budgets::check_resource_depth(v->as_object()).ok());
  json::value deeper = *budgets::parse_json(deep_route(60), budgets::resource());
  deeper.as_object()["vars"] = *budgets::parse_json(nested_json(64), budgets::resource());  // 65 levels, built after parsing (a PATCH)
  EXPECT_FALSE(budgets::check_resource_depth(deeper).ok());
  EXPECT_FALSE(budgets::check_resource_depth(deeper.as_object()).ok());
}

// What one source accepts every source accepts: a resource at the limit
// still parses inside the standalone document and inside the local cache.
TEST(Budgets, DocumentsAddTheirWrapperDepth) {
  const std::string route = deep_route(64);
  const std::string standalone = "{\"routes\":[" + route + "]}";
  const std::string cache = "{\"format\":\"holdfast-cache\",\"resources\":{\"routes\":[" + route + "]}}";
  EXPECT_TRUE(budgets::parse_json(standalone, budgets::document(budgets::kStandaloneWrapper)).ok());
  EXPECT_TRUE(budgets::parse_json(cache, budgets::document(budgets::kCacheWrapper)).ok());
  const std::string too_deep = "{\"routes\":[" + deep_route(65) + "]}";
  EXPECT_FALSE(budgets::parse_json(too_deep, budgets::document(budgets::kStandaloneWrapper)).ok());
  // YAML counts levels the same way.
  const std::string yaml = "routes:\n  - " + route + "\n";
  EXPECT_TRUE(yaml_to_json(yaml, budgets::document(budgets::kStandaloneWrapper)).ok());
  auto y = yaml_to_json("routes:\n  - " + deep_route(65) + "\n", budgets::document(budgets::kStandaloneWrapper));
  ASSERT_FALSE(y.ok());
  EXPECT_NE(y.error().find("nested deeper than 66 levels"), std::string::npos) << y.error();
}

TEST(Budgets, DocumentSize) {
  budgets::Document small = budgets::resource(16);
  EXPECT_TRUE(budgets::parse_json("{\"a\":\"01234567\"}", small).ok());  // 16 bytes
  auto r = budgets::parse_json("{\"a\":\"012345678\"}", small);  // 17 bytes
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("exceeds the limit of 16 bytes"), std::string::npos) << r.error();
  EXPECT_FALSE(yaml_to_json("a: 0123456789abcdef", small).ok());
}

TEST(Yaml, AliasBombIsRefused) {
  const std::string bomb = alias_bomb();
  ASSERT_LT(bomb.size(), 1024u);
  auto r = yaml_to_json(bomb, budgets::document(budgets::kStandaloneWrapper));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("aliases expand the document beyond 10 times"), std::string::npos) << r.error();
}

TEST(Yaml, OrdinaryAliasesStillWork) {
  auto r = yaml_to_json(R"(
upstreams:
  - &up {id: 1, type: roundrobin, nodes: {"127.0.0.1:80": 1}}
routes:
  - {id: 1, uri: /a, upstream: *up}
  - {id: 2, uri: /b, upstream: *up}
)", budgets::document(budgets::kStandaloneWrapper));
  ASSERT_TRUE(r.ok()) << r.error();
  const auto& routes = r->as_object().at("routes").as_array();
  EXPECT_EQ(routes[1].as_object().at("upstream").as_object().at("type").as_string(), "roundrobin");
  EXPECT_EQ(routes[0].as_object().at("upstream"), r->as_object().at("upstreams").as_array()[0]);
}

TEST(Yaml, SelfReferenceIsAnErrorNotARecursion) {
  auto r = yaml_to_json("a: &x [1, *x]\n", budgets::document(0));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("contains it"), std::string::npos) << r.error();
}

TEST(Yaml, KeysAndScalars) {
  auto r = yaml_to_json("? ~\n: 1\n'2': \"x\"\nk: &s text\n*s : 3\nlist: [a, 'b', ~, 07]\n", budgets::document(0));
  ASSERT_TRUE(r.ok()) << r.error();
  const auto& o = r->as_object();
  EXPECT_EQ(o.at("null").as_int64(), 1);
  EXPECT_EQ(o.at("2").as_string(), "x");
  EXPECT_EQ(o.at("text").as_int64(), 3);
  EXPECT_EQ(json::serialize(o.at("list")), R"(["a","b",null,7])");
  EXPECT_FALSE(yaml_to_json("[1]: x\n", budgets::document(0)).ok());
  EXPECT_TRUE(yaml_to_json("", budgets::document(0))->is_null());
  EXPECT_FALSE(yaml_to_json("a: [1\n", budgets::document(0)).ok());
}
