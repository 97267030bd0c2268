// Upstream TLS pieces: the upstream `tls` schema, the SNI taken from a Host
// value, and the snapshot's client contexts (shared by identity, kept across
// reloads, a bad client certificate making the route answer 502).
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "model/resources.h"
#include "snapshot/snapshot.h"
#include "tls/client_context.h"

using namespace holdfast;
namespace json = boost::json;

TEST(UpstreamTls, Schema) {
  auto u = model::parse_upstream(json::parse(R"({"id":"1","scheme":"https","nodes":{"a.test":1},
                                                 "tls":{"verify":true,"client_cert_id":"c1"}})"), false);
  ASSERT_TRUE(u.ok()) << u.error();
  EXPECT_TRUE((*u)->tls.verify);
  EXPECT_EQ((*u)->tls.client_cert_id, "c1");
  EXPECT_EQ((*u)->nodes[0].port, 443);
  auto d = model::parse_upstream(json::parse(R"({"id":"1","nodes":{"a.test":1}})"), false);
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE((*d)->tls.verify);  // APISIX's default
  for (const char* bad : {R"({"client_cert":"x"})", R"({"client_cert":"x","client_key":"y","client_cert_id":"1"})",
                          R"({"verify":1})", R"({"other":1})"}) {
    auto b = model::parse_upstream(
        json::parse(std::string(R"({"id":"1","nodes":{"a.test":1},"tls":)") + bad + "}"), false);
    EXPECT_FALSE(b.ok()) << bad;
  }
}

TEST(UpstreamTls, SniFromHost) {
  EXPECT_EQ(tls::sni_for_host("Example.COM:8443"), "example.com");
  EXPECT_EQ(tls::sni_for_host("example.com."), "example.com");
  EXPECT_EQ(tls::sni_for_host("127.0.0.1:443"), "");
  EXPECT_EQ(tls::sni_for_host("[::1]:443"), "");
  EXPECT_EQ(tls::sni_for_host(""), "");
}

TEST(UpstreamTls, ContextsSharedByIdentityAndKeptAcrossReloads) {
  auto doc = json::parse(R"({"routes":[
      {"id":"a","uri":"/a","upstream":{"scheme":"https","nodes":{"127.0.0.1:1":1}}},
      {"id":"b","uri":"/b","upstream":{"scheme":"https","nodes":{"127.0.0.1:2":1}}},
      {"id":"c","uri":"/c","upstream":{"scheme":"https","nodes":{"127.0.0.1:3":1},"tls":{"client_cert_id":"nope"}}},
      {"id":"d","uri":"/d","upstream":{"nodes":{"127.0.0.1:4":1}}}]})");
  snapshot::CompileOptions o;
  auto s1 = snapshot::compile_snapshot(doc, o);
  ASSERT_TRUE(s1.ok()) << s1.error();
  const auto& r = (*s1)->routes;
  ASSERT_EQ(r.size(), 4u);
  ASSERT_TRUE(r[0].upstream->tls);
  EXPECT_EQ(r[0].upstream->tls, r[1].upstream->tls);  // one context for one combination
  EXPECT_EQ(r[2].upstream_error, 502);                 // unknown client_cert_id
  EXPECT_FALSE(r[3].upstream->tls);                    // plain http
  EXPECT_EQ((*s1)->client_contexts.size(), 1u);
  o.previous = s1->get();
  auto s2 = snapshot::compile_snapshot(doc, o);
  ASSERT_TRUE(s2.ok());
  EXPECT_EQ((*s2)->routes[0].upstream->tls, r[0].upstream->tls);  // reused, not rebuilt
}
