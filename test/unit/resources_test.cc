#include "model/resources.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "snapshot/snapshot.h"

using namespace holdfast;
namespace json = boost::json;

TEST(Resources, RouteDefaultsAndIdForms) {
  auto r = model::parse_route(json::parse(R"({"id":7,"uri":"/a","upstream":{"nodes":{"127.0.0.1":1}}})"));
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ((*r)->id, "7");
  EXPECT_EQ((*r)->status, 1);
  EXPECT_EQ((*r)->priority, 0);
  ASSERT_EQ((*r)->upstream->nodes.size(), 1u);
  EXPECT_EQ((*r)->upstream->nodes[0].port, 80);
}

TEST(Resources, RouteErrors) {
  struct Case {
    const char* json;
    const char* msg;
  } cases[] = {
      {R"({"id":"1","uri":1,"upstream_id":"1"})", "property \"uri\" validation failed: wrong type: expected string, got number"},
      {R"({"id":"1","uri":"/a","uris":["/b"],"upstream_id":"1"})", "only one schema"},
      {R"({"id":"1","uri":"/a"})", "object matches none of the required"},
      {R"({"id":"1","uri":"/a","upstream_id":"1","foo":1})", "additional properties forbidden, found foo"},
      {R"({"id":"1","uri":"/a","upstream_id":"1","host":"a","hosts":["b"]})", "only one of host or hosts is allowed"},
      {R"({"id":"1","uri":"/a","upstream_id":"1","methods":["FETCH"]})", "methods"},
      {R"({"id":"1","uri":"/a","upstream_id":"1","remote_addrs":["10.0.0.0/99"]})", "invalid remote_addr"},
      {R"({"id":"bad id","uri":"/a","upstream_id":"1"})", "property \"id\" validation failed"},
      {R"({"id":"1","uri":"/a","upstream":{"nodes":{"::1:80":1}}})", "IPv6 address must be enclosed"},
      {R"({"id":"1","uri":"/a","upstream":{"nodes":{"a:80":1},"retries":-1}})", "expected -1 to be at least 0"},
      {R"({"id":"1","uri":"/a","upstream":{"type":"chash","nodes":{"a:80":1}}})", "missing key"},
      {R"({"id":"1","uri":"/a","upstream":{"nodes":{"a:80":1},"pass_host":"rewrite"}})", "upstream_host"},
      {R"({"id":"1","uri":"/a","upstream":{"nodes":{"a:80":1},"checks":{"passive":{}}}})", "active"},
      // APISIX's enum message, without a list of values (t/node/route-status.t TEST 9).
      {R"({"id":"1","uri":"/a","upstream_id":"1","status":100})",
       "property \"status\" validation failed: matches none of the enum values"},
      {R"({"id":"1","uri":"/a","upstream_id":"1","status":4294967297})", "matches none of the enum values"},
      // Probes are GET without a body: another method or a body is refused, named.
      {R"({"id":"1","uri":"/a","upstream":{"nodes":{"a:80":1},"checks":{"active":{"http_method":"POST"}}}})",
       "http_method other than GET is not supported by Holdfast"},
      {R"({"id":"1","uri":"/a","upstream":{"nodes":{"a:80":1},"checks":{"active":{"http_req_body":"x"}}}})",
       "http_req_body is not supported by Holdfast"},
  };
  for (const auto& c : cases) {
    auto r = model::parse_route(json::parse(c.json));
    ASSERT_FALSE(r.ok()) << c.json;
    EXPECT_NE(r.error().find(c.msg), std::string::npos) << c.json << " -> " << r.error();
  }
}

// Keys APISIX has and Holdfast accepts without acting on them are named
// (#11 item 9); APISIX's defaults pass without a word.
TEST(Resources, IgnoredKeysAreNamed) {
  auto route = json::parse(R"({"id":"1","uri":"/a","upstream":{"nodes":{"a:80":1},
      "checks":{"active":{"concurrency":4,"http_method":"GET","http_req_body":""}}}})").as_object();
  ASSERT_TRUE(model::parse_route(route).ok());
  auto w = model::ignored_keys("route", route);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].rfind("upstream.checks.active.concurrency is not implemented by Holdfast", 0), 0u) << w[0];
  auto up = json::parse(R"({"id":"u","service_name":"svc","discovery_type":"dns"})").as_object();
  ASSERT_TRUE(model::parse_upstream(up, false).ok());
  w = model::ignored_keys("upstream", up);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[0].rfind("service_name is not implemented by Holdfast", 0), 0u) << w[0];
  EXPECT_TRUE(model::ignored_keys("route", json::parse(R"({"id":"1","uri":"/a","upstream_id":"u"})").as_object()).empty());
}

TEST(Resources, UpstreamNodeForms) {
  auto u = model::parse_upstream(json::parse(
      R"({"id":"u","scheme":"https","nodes":[{"host":"[::1]","port":8443,"weight":2,"priority":-1},{"host":"b","weight":1}]})"), false);
  ASSERT_TRUE(u.ok()) << u.error();
  EXPECT_EQ((*u)->nodes[0].host, "::1");
  EXPECT_EQ((*u)->nodes[0].priority, -1);
  EXPECT_EQ((*u)->nodes[1].port, 443);
  EXPECT_EQ((*u)->keepalive_size, 320);
}

TEST(Snapshot, InvalidResourcesAreSkippedOthersApplied) {
  auto doc = json::parse(R"({
    "upstreams":[{"id":"u1","nodes":{"127.0.0.1:1":1}}],
    "routes":[
      {"id":"good","uri":"/g","upstream_id":"u1"},
      {"id":"bad","uri":5,"upstream_id":"u1"},
      {"id":"unknown-plugin","uri":"/u","upstream_id":"u1","plugins":{"nope":{}}},
      {"id":"disabled","uri":"/d","upstream_id":"u1","status":0}
    ]})");
  snapshot::CompileOptions opts;
  auto s = snapshot::compile_snapshot(doc, opts);
  ASSERT_TRUE(s.ok()) << s.error();
  EXPECT_EQ((*s)->routes.size(), 1u);
  EXPECT_EQ((*s)->skipped, 2u);
  EXPECT_NE((*s)->first_error.find("routes[id=bad]"), std::string::npos) << (*s)->first_error;
}

TEST(Snapshot, MergePrecedenceRouteOverPluginConfigOverService) {
  auto doc = json::parse(R"({
    "services":[{"id":"s","plugins":{"request-id":{"header_name":"X-From-Service"}, "cors":{}},
                 "upstream":{"nodes":{"127.0.0.1:1":1}}}],
    "plugin_configs":[{"id":"pc","plugins":{"request-id":{"header_name":"X-From-PC"}, "ip-restriction":{"whitelist":["127.0.0.1"]}}}],
    "routes":[{"id":"r","uri":"/x","service_id":"s","plugin_config_id":"pc",
               "plugins":{"ip-restriction":{"blacklist":["10.0.0.1"]}}}]})");
  auto s = snapshot::compile_snapshot(doc, {});
  ASSERT_TRUE(s.ok()) << s.error();
  ASSERT_EQ((*s)->routes.size(), 1u);
  const auto& r = (*s)->routes[0];
  EXPECT_EQ(r.chain.entries.size(), 3u);  // cors (service), request-id (pc), ip-restriction (route)
  EXPECT_TRUE(r.upstream != nullptr);     // inherited from the service
  // ordered by priority: cors 4000 > ip-restriction 3000; request-id 12015 first
  EXPECT_STREQ(r.chain.entries[0].def->name, "request-id");
  EXPECT_STREQ(r.chain.entries[1].def->name, "cors");
}

TEST(Snapshot, UpstreamErrors) {
  auto doc = json::parse(R"({"routes":[
      {"id":"a","uri":"/a","upstream_id":"missing"},
      {"id":"b","uri":"/b","plugins":{"cors":{}}}]})");
  auto s = snapshot::compile_snapshot(doc, {});
  ASSERT_TRUE(s.ok());
  ASSERT_EQ((*s)->routes.size(), 2u);
  EXPECT_EQ((*s)->routes[0].upstream_error, 502);
  EXPECT_EQ((*s)->routes[1].upstream_error, 503);
}

TEST(Snapshot, CredentialsStandForTheirConsumer) {
  auto doc = json::parse(R"({"consumers":[
      {"username":"jack","labels":{"custom_id":"cust-1"},"plugins":{"key-auth":{"key":"own-key"}}},
      {"id":"jack/credentials/c1","plugins":{"key-auth":{"key":"cred-key"}}},
      {"id":"ghost/credentials/c2","plugins":{"key-auth":{"key":"x"}}},
      {"username":"bad","plugins":{"key-auth":{}}}]})");
  auto s = snapshot::compile_snapshot(doc, {});
  ASSERT_TRUE(s.ok()) << s.error();
  const auto& idx = (*s)->consumers.by_credential.at("key-auth");
  ASSERT_TRUE(idx.count("cred-key"));
  EXPECT_EQ(idx.at("cred-key").consumer->conf->username, "jack");
  EXPECT_EQ(idx.at("cred-key").consumer->conf->credential_id, "c1");
  EXPECT_EQ(idx.at("cred-key").consumer->conf->custom_id, "cust-1");
  EXPECT_EQ(idx.at("own-key").consumer->conf->credential_id, "");
  EXPECT_EQ((*s)->skipped, 2u);  // a credential without its consumer, a consumer without a key
}
