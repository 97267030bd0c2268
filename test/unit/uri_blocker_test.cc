// uri-blocker searches APISIX's $request_uri: the decoded, normalised path and
// the query, so that encodings and dot segments cannot hide a blocked path.
#include <gtest/gtest.h>

#include "plugin_run.h"

using holdfast::plugins::Action;
using holdfast::test::PluginRun;

TEST(UriBlocker, MatchesNormalisedPathAndQuery) {
  const char* conf = R"j({"block_rules": ["^/internal/", "select.+from"]})j";
  EXPECT_EQ(PluginRun("uri-blocker", conf, "/./internal/x").action, Action::respond);
  EXPECT_EQ(PluginRun("uri-blocker", conf, "/a/../internal/x").action, Action::respond);
  EXPECT_EQ(PluginRun("uri-blocker", conf, "/%69nternal/x").action, Action::respond);
  EXPECT_EQ(PluginRun("uri-blocker", conf, "/q?n=select%20x%20from").action, Action::respond);
  EXPECT_EQ(PluginRun("uri-blocker", conf, "/public/internal/").action, Action::next);
}

TEST(UriBlocker, RejectedCodeMessageAndCase) {
  PluginRun r("uri-blocker", R"j({"block_rules": ["AA"], "case_insensitive": true, "rejected_code": 451,
                                  "rejected_msg": "no"})j",
              "/x?aa=1");
  EXPECT_EQ(r.action, Action::respond);
  EXPECT_EQ(r.ctx.resp_status, 451);
  EXPECT_EQ(r.ctx.resp_body, "{\"error_msg\":\"no\"}\n");
  PluginRun plain("uri-blocker", R"j({"block_rules": ["AA"]})j", "/x?aa=1");
  EXPECT_EQ(plain.action, Action::next);
  PluginRun dflt("uri-blocker", R"j({"block_rules": ["aa"]})j", "/x?aa=1");
  EXPECT_EQ(dflt.ctx.resp_status, 403);
  EXPECT_EQ(dflt.ctx.resp_body, "");
}

TEST(UriBlocker, MatchLimitBlocks) {
  PluginRun r("uri-blocker", R"j({"block_rules": ["^/(a+)+$"]})j", "/" + std::string(40, 'a') + "b");
  EXPECT_EQ(r.action, Action::respond);
  EXPECT_EQ(r.ctx.resp_status, 403);
}

TEST(UriBlocker, EveryRuleMustCompile) {
  auto p = holdfast::plugins::find_plugin("uri-blocker")
               ->create(boost::json::parse(R"j({"block_rules": ["^a", "^b("]})j").as_object(), "t");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().rfind("pcre_compile() failed: missing closing parenthesis", 0), 0u) << p.error();
  EXPECT_NE(p.error().find("in \"^b(\""), std::string::npos) << p.error();
}
