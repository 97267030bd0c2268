// traffic-split as the snapshot compiler binds it: the pick order of APISIX's
// weighted round-robin (lua-resty-balancer's), references resolved to the
// snapshot's own upstream, the split upstreams compiled for the health
// checker, and APISIX's 500 for a reference to no upstream.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>

#include "plugins/plugin.h"
#include "snapshot/snapshot.h"

namespace json = boost::json;
using namespace holdfast;

namespace {

std::shared_ptr<snapshot::Snapshot> compile(const char* doc) {
  auto s = snapshot::compile_snapshot(json::parse(doc), {});
  EXPECT_TRUE(s.ok()) << s.error();
  return s.ok() ? *s : nullptr;
}

struct Outcome {
  const snapshot::CompiledUpstream* upstream_override = nullptr;
  plugins::Action action = plugins::Action::next;
  int resp_status = 0;
  std::string resp_body;
};

// Runs the route's traffic-split access hook on `target`.
Outcome run(const snapshot::CompiledRoute& r, const std::string& target) {
  http::RequestHead head;
  head.method = "GET";
  head.target = target;
  size_t q = target.find('?');
  head.path = std::string_view(target).substr(0, q);
  head.query = q == std::string::npos ? std::string_view() : std::string_view(target).substr(q + 1);
  plugins::RequestCtx ctx;
  ctx.req = &head;
  ctx.uri = std::string(head.path);
  Outcome out;
  for (const auto& e : r.chain.entries)
    if (std::string_view(e.def->name) == "traffic-split") out.action = e.plugin->access(ctx);
  out.upstream_override = ctx.upstream_override;
  out.resp_status = ctx.resp_status;
  out.resp_body = ctx.resp_body;
  return out;
}

}  // namespace

TEST(TrafficSplit, WeightedRoundRobinOrderAndTargets) {
  auto s = compile(R"({
    "upstreams":[{"id":"b","nodes":{"127.0.0.1:2":1}}],
    "routes":[{"id":"r","uri":"/x","upstream":{"nodes":{"127.0.0.1:3":1}},
      "plugins":{"traffic-split":{"rules":[{"weighted_upstreams":[
        {"upstream":{"nodes":{"127.0.0.1:1":1}},"weight":3},{"upstream_id":"b","weight":2},{"weight":1}]}]}}}]})");
  ASSERT_TRUE(s);
  ASSERT_EQ(s->split_upstreams.size(), 1u);  // the inline one (the reference is upstreams/b)
  const auto* a = s->split_upstreams[0].get();
  const auto* b = s->upstreams.at("b").get();
  EXPECT_EQ(a->key, "routes/r/traffic-split/rules[1].weighted_upstreams[1]");
  // lua-resty-balancer's roundrobin from the first entry: A A B A B C, then again.
  std::vector<const snapshot::CompiledUpstream*> want = {a, a, b, a, b, nullptr,
                                                         a, a, b, a, b, nullptr};
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_EQ(run(s->routes[0], "/x").upstream_override, want[i]) << i;
}

TEST(TrafficSplit, MatchRulesInOrderElseRouteUpstream) {
  auto s = compile(R"({
    "routes":[{"id":"r","uri":"/x","upstream":{"nodes":{"127.0.0.1:3":1}},
      "plugins":{"traffic-split":{"rules":[
        {"match":[{"vars":[["arg_a","==","1"]]},{"vars":[["arg_b","==","1"]]}],
         "weighted_upstreams":[{"upstream":{"nodes":{"127.0.0.1:1":1}}}]},
        {"match":[{"vars":[["arg_c","==","1"]]}],"weighted_upstreams":[{"upstream":{"nodes":{"127.0.0.1:2":1}}}]}]}}}]})");
  ASSERT_TRUE(s);
  ASSERT_EQ(s->split_upstreams.size(), 2u);
  EXPECT_EQ(run(s->routes[0], "/x?a=1").upstream_override, s->split_upstreams[0].get());
  EXPECT_EQ(run(s->routes[0], "/x?b=1").upstream_override, s->split_upstreams[0].get());
  EXPECT_EQ(run(s->routes[0], "/x?c=1&a=1").upstream_override, s->split_upstreams[0].get());
  EXPECT_EQ(run(s->routes[0], "/x?c=1").upstream_override, s->split_upstreams[1].get());
  EXPECT_EQ(run(s->routes[0], "/x?d=1").upstream_override, nullptr);
}

TEST(TrafficSplit, MissingUpstreamIdAnswers500WhenItsRuleIsReached) {
  auto s = compile(R"({
    "routes":[{"id":"r","uri":"/x","upstream":{"nodes":{"127.0.0.1:3":1}},
      "plugins":{"traffic-split":{"rules":[
        {"match":[{"vars":[["arg_a","==","1"]]}],"weighted_upstreams":[{"upstream":{"nodes":{"127.0.0.1:1":1}}}]},
        {"match":[{"vars":[["arg_b","==","1"]]}],"weighted_upstreams":[{"upstream_id":"gone"}]}]}}}]})");
  ASSERT_TRUE(s);
  auto hit = run(s->routes[0], "/x?a=1");  // the first rule passes before the second is checked
  EXPECT_EQ(hit.action, plugins::Action::next);
  EXPECT_NE(hit.upstream_override, nullptr);
  auto miss = run(s->routes[0], "/x");
  EXPECT_EQ(miss.action, plugins::Action::respond);
  EXPECT_EQ(miss.resp_status, 500);
  EXPECT_EQ(miss.resp_body, "failed to fetch upstream info by upstream id: gone");
}
