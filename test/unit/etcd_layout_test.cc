// Mirrors src/config/etcd/etcd_layout.cc: which etcd keys make the document.
#include "config/etcd/etcd_layout.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

using namespace holdfast;
namespace json = boost::json;

TEST(EtcdLayout, KeysThatChangeTheDocument) {
  EXPECT_TRUE(config::in_document("/apisix/routes/1", "/apisix"));
  EXPECT_TRUE(config::in_document("/apisix/consumers/jack/credentials/a", "/apisix"));
  EXPECT_TRUE(config::in_document("/apisix/plugins", "/apisix"));
  EXPECT_TRUE(config::in_document("/apisix/stream_routes/9", "/apisix"));
  EXPECT_FALSE(config::in_document("/apisix/gen_id", "/apisix"));
  EXPECT_FALSE(config::in_document("/apisix/data_plane/server_info/abc", "/apisix"));
  EXPECT_FALSE(config::in_document("/apisix/junk/1", "/apisix"));
  EXPECT_FALSE(config::in_document("/apisixroutes/1", "/apisix"));
  EXPECT_FALSE(config::in_document("/other/routes/1", "/apisix"));
  EXPECT_FALSE(config::in_document("/apisix", "/apisix"));
}

TEST(EtcdLayout, DocumentFromKeys) {
  std::map<std::string, json::value> kv;
  kv["/apisix/routes/1"] = json::parse(R"({"uri":"/a","upstream_id":"u"})");
  kv["/apisix/routes"] = nullptr;  // an init_dir marker
  kv["/apisix/plugins"] = json::parse(R"([{"name":"key-auth"}])");
  kv["/apisix/consumers/jack"] = json::parse(R"({"plugins":{}})");
  kv["/apisix/consumers/jack/credentials/c1"] = json::parse(R"({"plugins":{"key-auth":{"key":"k"}}})");
  kv["/apisix/data_plane/server_info/x"] = json::parse(R"({"id":"x"})");
  json::object doc = config::build_document(kv, "/apisix");
  ASSERT_EQ(doc.at("routes").as_array().size(), 1u);
  EXPECT_EQ(doc.at("routes").as_array()[0].at("id").as_string(), "1");
  EXPECT_EQ(doc.at("plugins").as_array().size(), 1u);
  const auto& consumers = doc.at("consumers").as_array();
  ASSERT_EQ(consumers.size(), 2u);
  EXPECT_EQ(consumers[0].at("username").as_string(), "jack");
  EXPECT_EQ(consumers[1].at("id").as_string(), "jack/credentials/c1");
  EXPECT_FALSE(doc.contains("data_plane"));
}
