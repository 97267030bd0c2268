#include "router/router.h"

#include <gtest/gtest.h>

#include "map_vars.h"

#include <boost/json.hpp>

using namespace holdfast;
using namespace holdfast::router;

namespace {

using holdfast::testing::MapVars;

RouteSpec spec(uint32_t idx, std::vector<std::string> uris, int64_t prio = 0) {
  RouteSpec s;
  s.index = idx;
  s.uris = std::move(uris);
  s.priority = prio;
  return s;
}

int64_t match(const Router& r, std::string_view path, std::string_view host = "", std::string_view method = "GET",
              const VarSource* vars = nullptr, const char* ip = "127.0.0.1", Params* params = nullptr) {
  MatchInput in;
  in.method = method;
  in.path = path;
  in.host = host;
  in.host_header = host;
  static IpAddr addr;
  addr = *IpAddr::parse(ip);
  in.remote_addr = &addr;
  in.vars = vars;
  return r.match(in, params);
}

Router build(const std::vector<RouteSpec>& specs, RouterKind kind = RouterKind::radixtree_host_uri) {
  auto r = Router::build(kind, specs);
  EXPECT_TRUE(r.ok());
  return std::move(*r);
}

}  // namespace

TEST(Router, ExactBeatsPrefixWhateverThePriority) {
  auto r = build({spec(0, {"/foo*"}, 100), spec(1, {"/foo"}, 0)});
  EXPECT_EQ(match(r, "/foo"), 1);
  EXPECT_EQ(match(r, "/foobar"), 0);
}

TEST(Router, LongestPrefixFirst) {
  auto r = build({spec(0, {"/*"}, 10), spec(1, {"/api/*"}), spec(2, {"/api/v1/*"})});
  EXPECT_EQ(match(r, "/api/v1/x"), 2);
  EXPECT_EQ(match(r, "/api/v2/x"), 1);
  EXPECT_EQ(match(r, "/other"), 0);
}

TEST(Router, PrefixSemantics) {
  auto r = build({spec(0, {"/foo*"}), spec(1, {"/bar/*"})});
  EXPECT_EQ(match(r, "/foo"), 0);
  EXPECT_EQ(match(r, "/foo/x"), 0);
  EXPECT_EQ(match(r, "/foobar"), 0);
  EXPECT_EQ(match(r, "/bar"), -1);
  EXPECT_EQ(match(r, "/bar/"), 1);
}

TEST(Router, PriorityWithinSamePathThenInsertionOrder) {
  auto r = build({spec(0, {"/p"}, 1), spec(1, {"/p"}, 5), spec(2, {"/p"}, 5)});
  EXPECT_EQ(match(r, "/p"), 1);
}

TEST(Router, MethodsFilterAndFallThrough) {
  auto s0 = spec(0, {"/m"}, 10);
  s0.methods = {"POST"};
  auto r = build({s0, spec(1, {"/m"})});
  EXPECT_EQ(match(r, "/m", "", "POST"), 0);
  EXPECT_EQ(match(r, "/m", "", "GET"), 1);
  EXPECT_EQ(match(r, "/m", "", "BREW"), 1);
}

TEST(Router, HostsExactWildcardAndHostlessOrder) {
  auto a = spec(0, {"/h"});
  a.hosts = {"api.example.com"};
  auto b = spec(1, {"/h"});
  b.hosts = {"*.example.com"};
  auto c = spec(2, {"/h"}, 1000);  // no host: loses to any host match
  auto r = build({a, b, c});
  EXPECT_EQ(match(r, "/h", "api.example.com"), 0);
  EXPECT_EQ(match(r, "/h", "www.example.com"), 1);
  EXPECT_EQ(match(r, "/h", "a.b.example.com"), 1);
  EXPECT_EQ(match(r, "/h", "example.com"), 2);
  EXPECT_EQ(match(r, "/h", "other.org"), 2);
}

TEST(Router, HostTreeFallsBackToHostlessWhenPathDiffers) {
  auto a = spec(0, {"/only-a"});
  a.hosts = {"a.com"};
  auto r = build({a, spec(1, {"/*"})});
  EXPECT_EQ(match(r, "/x", "a.com"), 1);
  EXPECT_EQ(match(r, "/only-a", "a.com"), 0);
}

TEST(Router, UriRouterChecksHostsAsPredicate) {
  auto a = spec(0, {"/h"}, 0);
  a.hosts = {"*.example.com"};
  auto b = spec(1, {"/h"}, 5);
  b.hosts = {"other.com"};
  auto r = build({a, b}, RouterKind::radixtree_uri);
  EXPECT_EQ(match(r, "/h", "x.example.com"), 0);
  EXPECT_EQ(match(r, "/h", "other.com"), 1);
  EXPECT_EQ(match(r, "/h", "nope.org"), -1);
}

// APISIX t/router/radixtree-uri-with-parameter.t TEST 10-11: the parameter
// router checks hosts (a route's own or its service's) like radixtree_uri;
// it used to ignore them.
TEST(Router, ParameterRouterChecksHostsAsPredicate) {
  auto a = spec(0, {"/:name/hello"});
  a.hosts = {"bar.com"};
  auto b = spec(1, {"/:name/hello"}, -1);
  auto c = spec(2, {"/exact"});
  c.hosts = {"*.example.com"};
  auto r = build({a, b, c}, RouterKind::radixtree_uri_with_parameter);
  EXPECT_EQ(match(r, "/john/hello", "bar.com"), 0);
  EXPECT_EQ(match(r, "/john/hello", "www.foo.com"), 1);
  EXPECT_EQ(match(r, "/exact", "a.example.com"), 2);
  EXPECT_EQ(match(r, "/exact", "a.example.org"), -1);
}

TEST(Router, RemoteAddrsCidr) {
  auto a = spec(0, {"/r"});
  a.remote_addrs = {"10.0.0.0/8", "2001:db8::/32"};
  auto r = build({a, spec(1, {"/r*"})});
  EXPECT_EQ(match(r, "/r", "", "GET", nullptr, "10.1.2.3"), 0);
  EXPECT_EQ(match(r, "/r", "", "GET", nullptr, "2001:db8::1"), 0);
  EXPECT_EQ(match(r, "/r", "", "GET", nullptr, "192.168.0.1"), 1);
}

TEST(Router, VarsPredicate) {
  auto a = spec(0, {"/v"});
  a.vars = *Expr::compile(boost::json::parse(R"([["arg_env","==","beta"]])"));
  auto r = build({a, spec(1, {"/v"})});
  MapVars beta;
  beta.m["arg_env"] = "beta";
  MapVars other;
  EXPECT_EQ(match(r, "/v", "", "GET", &beta), 0);
  EXPECT_EQ(match(r, "/v", "", "GET", &other), 1);
}

TEST(Router, Parameters) {
  auto r = build({spec(0, {"/user/:id/profile"}), spec(1, {"/files/*path"}), spec(2, {"/user/me/profile"})},
                 RouterKind::radixtree_uri_with_parameter);
  Params p;
  EXPECT_EQ(match(r, "/user/42/profile", "", "GET", nullptr, "127.0.0.1", &p), 0);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].first, "id");
  EXPECT_EQ(p[0].second, "42");
  EXPECT_EQ(match(r, "/user/me/profile"), 2);  // exact still wins
  EXPECT_EQ(match(r, "/user//profile"), -1);
  EXPECT_EQ(match(r, "/files/a/b.txt", "", "GET", nullptr, "127.0.0.1", &p), 1);
  EXPECT_EQ(p[0].second, "a/b.txt");
}

TEST(Router, ColonIsLiteralInDefaultRouter) {
  auto r = build({spec(0, {"/user/:id"})});
  EXPECT_EQ(match(r, "/user/:id"), 0);
  EXPECT_EQ(match(r, "/user/42"), -1);
}

TEST(Router, ManyRoutes) {
  std::vector<RouteSpec> specs;
  for (uint32_t i = 0; i < 20000; ++i) specs.push_back(spec(i, {"/r/" + std::to_string(i)}));
  auto r = build(specs);
  EXPECT_EQ(match(r, "/r/12345"), 12345);
  EXPECT_EQ(match(r, "/r/20000"), -1);
}

// APISIX lowercases configured route and service hosts (router.lua,
// http/service.lua) and matches them against the lowercase $host.
TEST(Router, ConfiguredHostsAreCaseInsensitive) {
  for (auto kind : {RouterKind::radixtree_host_uri, RouterKind::radixtree_uri}) {
    auto a = spec(0, {"/h"});
    a.hosts = {"FOO.com"};
    auto b = spec(1, {"/w"});
    b.hosts = {"*.Example.COM"};
    auto r = build({a, b}, kind);
    EXPECT_EQ(match(r, "/h", "foo.com"), 0);
    EXPECT_EQ(match(r, "/w", "api.example.com"), 1);
    EXPECT_EQ(match(r, "/h", "bar.com"), -1);
  }
}
