#include "router/expr.h"

#include <gtest/gtest.h>

#include "map_vars.h"

#include <boost/json.hpp>
#include <map>

using namespace holdfast::router;

namespace {
using holdfast::testing::MapVars;

bool eval(const char* json, const MapVars& v) {
  auto e = Expr::compile(boost::json::parse(json));
  EXPECT_TRUE(e.ok()) << json << ": " << (e.ok() ? "" : e.error());
  return e.ok() && (*e)->eval(v);
}
}  // namespace

TEST(Expr, Operators) {
  MapVars v;
  v.m = {{"a", "10"}, {"s", "Hello"}, {"ip", "10.1.2.3"}, {"list", "x, y,z"}};
  EXPECT_TRUE(eval(R"([["a","==","10"]])", v));
  EXPECT_TRUE(eval(R"([["a","==",10]])", v));
  EXPECT_TRUE(eval(R"([["a",10]])", v));
  EXPECT_FALSE(eval(R"([["s","==",10]])", v));       // non-numeric with number rhs
  EXPECT_TRUE(eval(R"([["s","~=",10]])", v));
  EXPECT_TRUE(eval(R"([["a",">",9]])", v));
  EXPECT_FALSE(eval(R"([["a",">",10]])", v));
  EXPECT_TRUE(eval(R"([["a",">=",10]])", v));
  EXPECT_TRUE(eval(R"([["a","<",11]])", v));
  EXPECT_TRUE(eval(R"([["a","<=",10]])", v));
  EXPECT_FALSE(eval(R"([["s",">",1]])", v));
  EXPECT_TRUE(eval(R"([["s","~~","^H.l+o$"]])", v));
  EXPECT_FALSE(eval(R"([["s","~~","^hello$"]])", v));
  EXPECT_TRUE(eval(R"([["s","~*","^hello$"]])", v));
  EXPECT_FALSE(eval(R"([["missing","~~","."]])", v));
  EXPECT_TRUE(eval(R"([["s","in",["a","Hello"]]])", v));
  EXPECT_FALSE(eval(R"([["s","in",["a","b"]]])", v));
  EXPECT_TRUE(eval(R"([["list","has","y"]])", v));
  EXPECT_TRUE(eval(R"([["ip","ipmatch",["10.0.0.0/8"]]])", v));
  EXPECT_FALSE(eval(R"([["ip","ipmatch","192.168.0.0/16"]])", v));
  EXPECT_TRUE(eval(R"([["a","!","==","11"]])", v));
  EXPECT_TRUE(eval(R"([["a","IN",["10"]]])", v));  // operators are case-insensitive
}

TEST(Expr, LogicGroups) {
  MapVars v;
  v.m = {{"a", "1"}, {"b", "2"}};
  EXPECT_TRUE(eval(R"([["a","==","1"],["b","==","2"]])", v));
  EXPECT_FALSE(eval(R"([["a","==","1"],["b","==","3"]])", v));
  EXPECT_TRUE(eval(R"(["OR",["a","==","9"],["b","==","2"]])", v));
  EXPECT_FALSE(eval(R"(["!OR",["a","==","9"],["b","==","2"]])", v));
  EXPECT_TRUE(eval(R"(["!AND",["a","==","1"],["b","==","3"]])", v));
  EXPECT_TRUE(eval(R"(["AND",["a","==","1"],["OR",["b","==","9"],["b","==","2"]]])", v));
}

TEST(Expr, Errors) {
  auto bad = Expr::compile(boost::json::parse(R"([["a","=~","1"]])"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error(), "failed to validate the 'vars' expression: invalid operator '=~'");
  EXPECT_FALSE(Expr::compile(boost::json::parse(R"([["a","~~","(unclosed"]])")).ok());
  EXPECT_FALSE(Expr::compile(boost::json::parse(R"([["a","in","notarray"]])")).ok());
  EXPECT_FALSE(Expr::compile(boost::json::parse(R"("string")")).ok());
}

// lua-resty-expr's shape rules, with its messages (t/router/radixtree-uri-vars.t
// TEST 21, t/plugin/response-rewrite.t TEST 17): a lone condition must be
// wrapped in a list, an empty group inside is too short, `[]` matches all.
TEST(Expr, ShapeErrorsAsLuaRestyExpr) {
  auto bare = Expr::compile(boost::json::parse(R"(["http_user_agent","~*","android"])"));
  ASSERT_FALSE(bare.ok());
  EXPECT_EQ(bare.error(), "failed to validate the 'vars' expression: rule should be wrapped inside brackets");
  auto empty = Expr::compile(boost::json::parse(R"([[]])"));
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error(), "failed to validate the 'vars' expression: rule too short");
  MapVars v;
  EXPECT_TRUE(eval(R"([])", v));
}

TEST(Expr, RegexesArePcreAndTheMatchLimitIsFalse) {
  MapVars v;
  v.m = {{"uri", "/api/public"}, {"nl", "/a\n"}, {"cat", std::string(40, 'a') + "b"}};
  EXPECT_TRUE(eval(R"j([["uri","~~","^/api/(?!internal)"]])j", v));
  EXPECT_TRUE(eval(R"j([["nl","~~","^/a$"]])j", v));  // `$` before a final newline
  EXPECT_FALSE(eval(R"j([["cat","~~","^(a+)+$"]])j", v));
  // lua-resty-expr negates the false that a regex error gives.
  EXPECT_TRUE(eval(R"j([["cat","!","~~","^(a+)+$"]])j", v));
  auto bad = Expr::compile(boost::json::parse(R"j([["a","~~","(unclosed"]])j"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find("missing closing parenthesis at offset 9"), std::string::npos) << bad.error();
}
