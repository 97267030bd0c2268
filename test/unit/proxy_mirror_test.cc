// proxy-mirror describes its copy as APISIX builds the mirror URI: $uri
// (encoded again) and the query, `path` replacing the path or prefixing it;
// the copy is detached, so that nothing ever waits for it.
#include <gtest/gtest.h>

#include "plugin_run.h"
#include "plugins/side_request.h"

using holdfast::plugins::Action;
using holdfast::test::PluginRun;

TEST(ProxyMirror, DetachedCopyWithUriAndQuery) {
  PluginRun r("proxy-mirror", R"j({"host": "http://10.0.0.7:8081"})j", "/a/./b%20c?x=1&y");
  EXPECT_EQ(r.action, Action::next);
  ASSERT_TRUE(r.ctx.side);
  EXPECT_TRUE(r.ctx.side->detached);
  EXPECT_EQ(r.ctx.side->host, "10.0.0.7");
  EXPECT_EQ(r.ctx.side->port, 8081);
  EXPECT_EQ(r.ctx.side->scheme, "http");
  EXPECT_EQ(r.ctx.side->target, "/a/b%20c?x=1&y");
  EXPECT_EQ(r.ctx.side->client_body_max, 1u << 20);
}

TEST(ProxyMirror, PathReplaceAndPrefix) {
  PluginRun rep("proxy-mirror", R"j({"host": "https://[::1]", "path": "/m"})j", "/a?q=1");
  ASSERT_TRUE(rep.ctx.side);
  EXPECT_EQ(rep.ctx.side->target, "/m?q=1");
  EXPECT_EQ(rep.ctx.side->host, "::1");
  EXPECT_EQ(rep.ctx.side->port, 443);
  PluginRun pre("proxy-mirror", R"j({"host": "http://h.example", "path": "/m", "path_concat_mode": "prefix"})j",
                "/a?q=1");
  ASSERT_TRUE(pre.ctx.side);
  EXPECT_EQ(pre.ctx.side->target, "/m/a?q=1");
  EXPECT_EQ(pre.ctx.side->port, 80);
}

TEST(ProxyMirror, SchemaAsApisix) {
  const auto* def = holdfast::plugins::find_plugin("proxy-mirror");
  ASSERT_TRUE(def);
  auto bad = [&](const char* conf) { return def->create(boost::json::parse(conf).as_object(), "t").error(); };
  EXPECT_EQ(bad(R"j({"host": "http://127.0.0.1:80/"})j"),
            "property \"host\" validation failed: failed to match pattern "
            "\"^(http(s)?|grpc(s)?):\\/\\/([\\da-zA-Z.-]+|\\[[\\da-fA-F:]+\\])(:\\d+)?$\" with \"http://127.0.0.1:80/\"");
  EXPECT_EQ(bad(R"j({"host": "http://a", "path": "/a?b"})j"),
            "property \"path\" validation failed: failed to match pattern \"^/[^?&]+$\" with \"/a?b\"");
  EXPECT_EQ(bad(R"j({"host": "http://a", "sample_ratio": 0})j"),
            "property \"sample_ratio\" validation failed: expected 0 to be at least 1e-05");
  EXPECT_EQ(bad(R"j({"path": "/a"})j"), "property \"host\" is required");
}
