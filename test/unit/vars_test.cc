// router::resolve_var against APISIX's core.utils.resolve_var (apisix/core/utils.lua).
#include "router/vars.h"

#include <gtest/gtest.h>

#include "map_vars.h"

using holdfast::router::resolve_var;
using holdfast::testing::MapVars;

namespace {
MapVars vars() {
  MapVars v;
  v.m = {{"uri", "/hello"}, {"arg_a", "1"}, {"a.b", "dotted"}, {"empty", ""}};
  return v;
}
}  // namespace

TEST(ResolveVar, PlainAndBracedNames) {
  auto v = vars();
  size_t n = 0;
  EXPECT_EQ(resolve_var("$uri-${arg_a}-${ uri }", v, &n), "/hello-1-/hello");
  EXPECT_EQ(n, 3u);
  EXPECT_EQ(resolve_var("$a.b", v), "dotted");  // [\w.]+ takes the dot
}

TEST(ResolveVar, UnsetIsEmptyAndNotCounted) {
  auto v = vars();
  size_t n = 9;
  EXPECT_EQ(resolve_var("x$nope-$empty-y", v, &n), "x--y");
  EXPECT_EQ(n, 1u);  // $empty is set (to ""), $nope is not
  EXPECT_EQ(resolve_var("no vars", v, &n), "no vars");
  EXPECT_EQ(n, 0u);
}

TEST(ResolveVar, DefaultAfterQuestionMarks) {
  auto v = vars();
  size_t n = 0;
  EXPECT_EQ(resolve_var("${nope ?? 10}/${arg_a??20}", v, &n), "10/1");
  EXPECT_EQ(n, 2u);
}

TEST(ResolveVar, EscapedDollarAndLoneDollar) {
  auto v = vars();
  EXPECT_EQ(resolve_var("\\$uri $ ${} $$uri", v), "\\$uri $ ${} $/hello");
  EXPECT_EQ(resolve_var("${uri", v), "${uri");
}
