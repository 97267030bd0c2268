// The GraphQL summary behind APISIX's graphql_operation, graphql_name and
// graphql_root_fields (apisix/core/ctx.lua; t/router/graphql.t).
#include "http/graphql.h"

#include <gtest/gtest.h>

#include <string>

using holdfast::http::parse_graphql;

TEST(Graphql, FirstDefinitionGivesOperationNameAndRootFields) {
  auto g = parse_graphql("query repo { owner { name } repo: repository(name: \"x\") { id } }");
  ASSERT_TRUE(g);
  EXPECT_EQ(g->operation, "query");
  EXPECT_EQ(g->name, "repo");
  EXPECT_EQ(g->root_fields, (std::vector<std::string>{"owner", "repository"}));  // names, not aliases

  g = parse_graphql("{ hero }");
  ASSERT_TRUE(g);
  EXPECT_EQ(g->operation, "query");  // the shorthand is a query (graphql-lua says so too)
  EXPECT_EQ(g->name, "");

  g = parse_graphql("mutation M($v: [Int!]! = [1]) @d(a: 1) { a(x: $v) ...F ... on T { z } }\n"
                    "fragment F on T { y } query Other { b }");
  ASSERT_TRUE(g);
  EXPECT_EQ(g->operation, "mutation");
  EXPECT_EQ(g->name, "M");
  EXPECT_EQ(g->root_fields, (std::vector<std::string>{"a", "F"}));  // inline fragments have no name
}

TEST(Graphql, FullGrammarIsChecked) {
  for (const char* ok : {"subscription S { e(filter: {id: \"\\u00e9\", n: -1.5e3, b: true, z: null, l: [A, B]}) }",
                         "# comment\n, query { a }", "query { a(s: \"\"\"block \\\"\"\" here\"\"\") }",
                         "\xEF\xBB\xBFquery { a }"})
    EXPECT_TRUE(parse_graphql(ok)) << ok;
  for (const char* bad : {"", "   ", "query", "query {", "query { }", "query { a(", "query { a(x:) }",
                          "{ a } }", "query { a(x: $v) } extra", "query { a(x: 1.) }", "query { a(x: 01) }",
                          "query { a(x: \"unterminated) }", "query { a(x: \"bad \\q escape\") }",
                          "type Query { a: Int }", "fragment on on T { a }", "query ($v: ) { a }",
                          "query { a(x: {k: $v}) }x", "query Q($v: Int = $w) { a }", "query { a @ }"})
    EXPECT_FALSE(parse_graphql(bad)) << bad;
}

TEST(Graphql, NestingIsBounded) {
  std::string deep = "query { " + std::string(10000, '{') + "a" + std::string(10000, '}') + " }";
  EXPECT_FALSE(parse_graphql(deep));
  std::string lists = "query { a(x: " + std::string(100000, '[') + std::string(100000, ']') + ") }";
  EXPECT_FALSE(parse_graphql(lists));
  std::string ok = "query { a ";
  for (int i = 0; i < 50; ++i) ok += "{ a ";
  ok += std::string(51, '}');
  EXPECT_TRUE(parse_graphql(ok));
}
