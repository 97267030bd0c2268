// proxy-rewrite builds the upstream target from the decoded $uri: it must go
// out encoded as APISIX encodes it, never with a raw control character.
#include <gtest/gtest.h>

#include "plugin_run.h"

using holdfast::test::PluginRun;

TEST(ProxyRewrite, RegexUriIsEncodedSoOneRequestStaysOne) {
  PluginRun r("proxy-rewrite", R"j({"regex_uri": ["^/api/(.*)", "/$1"]})j",
              "/api/x%0d%0aHost:%20admin.internal%0d%0a%0d%0aGET%20/poisoned");
  ASSERT_TRUE(r.ctx.upstream_target);
  EXPECT_EQ(*r.ctx.upstream_target, "/x%0D%0AHost:%20admin.internal%0D%0A%0D%0AGET%20/poisoned");
  EXPECT_STREQ(r.ctx.upstream_target_by, "proxy-rewrite");
}

TEST(ProxyRewrite, UriTemplateEncodesVarsAndKeepsItsQuery) {
  // APISIX's t/plugin/proxy-rewrite3.t TEST 24, byte for byte: a '?' a
  // variable brings in becomes %3F before the path is encoded (so %253F).
  PluginRun apisix("proxy-rewrite", R"j({"uri": "/$uri/remain"})j",
                   "/hello%3f0z=700%26a=c%20HTTP/1.1%0D%0AHost:google.com%0d%0a%0d%0a");
  EXPECT_EQ(*apisix.ctx.upstream_target, "//hello%253F0z=700&a=c%20HTTP/1.1%0D%0AHost:google.com%0D%0A%0D%0A/remain");
  // The template's own query keeps ?, = and &, with only controls encoded;
  // the client's query follows after '&'.
  PluginRun r("proxy-rewrite", R"j({"uri": "/new$uri?from=$uri"})j", "/a%3Fb%0d%0a?c=1");
  EXPECT_EQ(*r.ctx.upstream_target, "/new/a%253Fb%0D%0A?from=/a%3Fb%0D%0A&c=1");
  PluginRun plain("proxy-rewrite", R"j({"uri": "/new/$arg_id/x"})j", "/p?id=7&z=9");
  EXPECT_EQ(*plain.ctx.upstream_target, "/new/7/x?id=7&z=9");
}

TEST(ProxyRewrite, RegexUriWithDecodedQuestionMarkEncodesIt) {
  // $uri held a '?' (client sent %3F): APISIX encodes the whole result,
  // a '?' from the template included.
  PluginRun r("proxy-rewrite", R"j({"regex_uri": ["^/api/(.*)", "/$1?x=1"]})j", "/api/a%3Fb?q=2");
  EXPECT_EQ(*r.ctx.upstream_target, "/a%3Fb%3Fx=1?q=2");
}

TEST(ProxyRewrite, HeaderValuesFromUriAreEscaped) {
  PluginRun r("proxy-rewrite", R"j({"headers": {"set": {"X-Path": "$uri"}, "add": {"X-Add": "[$uri]"}}})j",
              "/x%0d%0aX-Injected:%20yes");
  ASSERT_EQ(r.ctx.req_set.size(), 1u);
  EXPECT_EQ(r.ctx.req_set[0].value, "/x%0D%0AX-Injected: yes");
  EXPECT_STREQ(r.ctx.req_set[0].plugin, "proxy-rewrite");
  ASSERT_EQ(r.ctx.req_add.size(), 1u);
  EXPECT_EQ(r.ctx.req_add[0].value, "[/x%0D%0AX-Injected: yes]");
}

TEST(ProxyRewrite, HostMustMatchApisixPattern) {
  using holdfast::plugins::find_plugin;
  auto create = [](const char* conf) { return find_plugin("proxy-rewrite")->create(boost::json::parse(conf).as_object(), "t"); };
  EXPECT_TRUE(create(R"j({"host": "example.com:8080"})j"));
  auto bad = create(R"j({"host": "a\r\nX-Injected: 1"})j");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("property \"host\" validation failed"), std::string::npos) << bad.error();
}

TEST(ProxyRewrite, RegexUriFollowsPcreAndTheMatchLimitAnswers500) {
  // A backreference (RE2 has none) and ngx.re.sub's ${N}.
  PluginRun r("proxy-rewrite", R"j({"regex_uri": ["^/(\\w+)/\\1/(.*)$", "/dup/${1}/$2"]})j", "/v1/v1/x");
  EXPECT_EQ(*r.ctx.upstream_target, "/dup/v1/x");
  // (a+)+$ on a's and a final 'b': APISIX's regex error, a 500.
  PluginRun bad("proxy-rewrite", R"j({"regex_uri": ["^/(a+)+$", "/x"]})j", "/" + std::string(40, 'a') + "b");
  EXPECT_EQ(bad.action, holdfast::plugins::Action::respond);
  EXPECT_EQ(bad.ctx.resp_status, 500);
  EXPECT_NE(bad.ctx.resp_body.find("match limit exceeded"), std::string::npos) << bad.ctx.resp_body;
  EXPECT_FALSE(bad.ctx.upstream_target);
}

TEST(ProxyRewrite, HeadersAddThenSetThenRemoveAsApisix) {
  // APISIX applies add, then set (set wins on one header), then remove; a
  // set to "" (or to a variable that does not exist) removes the header.
  PluginRun r("proxy-rewrite",
              R"j({"headers": {"add": {"X-Both": "a", "X-Gone": "a"}, "set": {"X-Both": "s", "X-Empty": "",
                  "X-Nil": "$no_such_var"}, "remove": ["X-Gone"]}})j",
              "/p");
  ASSERT_EQ(r.ctx.req_set.size(), 1u);
  EXPECT_EQ(r.ctx.req_set[0].name, "X-Both");
  EXPECT_EQ(r.ctx.req_set[0].value, "s");
  EXPECT_TRUE(r.ctx.req_add.empty());
  EXPECT_FALSE(r.ctx.request_header("x-empty"));
  EXPECT_FALSE(r.ctx.request_header("x-nil"));
  EXPECT_FALSE(r.ctx.request_header("x-gone"));
  EXPECT_FALSE(r.ctx.var("http_x_gone"));
  EXPECT_EQ(r.ctx.request_header("x-both").value_or(""), "s");
}

TEST(ProxyRewrite, ArrayValuesAreEscapedElementByElement) {
  PluginRun r("proxy-rewrite", R"j({"regex_uri": ["(?s)^/(.*)", "/x"], "headers": {"set": {"X-M": ["$1", "$uri", 3]}}})j",
              "/a%0d%0aX-Injected:%20yes");
  ASSERT_EQ(r.ctx.req_set.size(), 1u);
  EXPECT_EQ(r.ctx.req_set[0].value, "a%0D%0AX-Injected: yes");
  ASSERT_EQ(r.ctx.req_add.size(), 2u);
  EXPECT_EQ(r.ctx.req_add[0].value, "/a%0D%0AX-Injected: yes");
  EXPECT_EQ(r.ctx.req_add[1].value, "3");
}

TEST(ProxyRewrite, CapturesAreNotExpandedAgainAsVariables) {
  // A capture the client controls stays literal: Holdfast resolves
  // captures and variables in one pass.
  PluginRun r("proxy-rewrite", R"j({"regex_uri": ["^/(.*)", "/x"], "headers": {"set": {"X-C": "[$1]"}}})j",
              "/$uri");
  ASSERT_EQ(r.ctx.req_set.size(), 1u);
  EXPECT_EQ(r.ctx.req_set[0].value, "[$uri]");
}
