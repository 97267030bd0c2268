// Upstreams with scheme grpc and grpcs: the schema (as APISIX's), default
// ports, and the snapshot giving grpcs (only) a client TLS context.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "model/resources.h"
#include "snapshot/snapshot.h"

using namespace holdfast;
namespace json = boost::json;

TEST(GrpcUpstream, Schema) {
  auto g = model::parse_upstream(json::parse(R"({"id":"1","scheme":"grpc","nodes":{"a.test":1}})"), false);
  ASSERT_TRUE(g.ok()) << g.error();
  EXPECT_EQ((*g)->scheme, "grpc");
  EXPECT_EQ((*g)->nodes[0].port, 80);
  auto s = model::parse_upstream(
      json::parse(R"({"id":"1","scheme":"grpcs","nodes":{"a.test":1},"tls":{"verify":true}})"), false);
  ASSERT_TRUE(s.ok()) << s.error();
  EXPECT_EQ((*s)->nodes[0].port, 443);
  EXPECT_FALSE(model::parse_upstream(json::parse(R"({"id":"1","scheme":"h2c","nodes":{"a.test":1}})"), false).ok());
}

TEST(GrpcUpstream, GrpcsGetsAClientTlsContext) {
  auto doc = json::parse(R"({"routes":[
      {"id":"a","uri":"/a","upstream":{"scheme":"grpcs","nodes":{"127.0.0.1:1":1}}},
      {"id":"b","uri":"/b","upstream":{"scheme":"grpc","nodes":{"127.0.0.1:2":1}}},
      {"id":"c","uri":"/c","upstream":{"scheme":"grpcs","nodes":{"127.0.0.1:3":1},"tls":{"client_cert_id":"nope"}}}]})");
  snapshot::CompileOptions o;
  auto snap = snapshot::compile_snapshot(doc, o);
  ASSERT_TRUE(snap.ok()) << snap.error();
  const auto& r = (*snap)->routes;
  ASSERT_EQ(r.size(), 3u);
  EXPECT_TRUE(r[0].upstream->tls);
  EXPECT_FALSE(r[1].upstream->tls);
  EXPECT_EQ(r[2].upstream_error, 502);  // the TLS issue's checks apply to grpcs
}
