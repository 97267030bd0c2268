// redirect builds Location from the decoded $uri: control characters in it
// are percent-encoded (as OpenResty's ngx.header does), so the 3xx goes out
// without an injected header.
#include <gtest/gtest.h>

#include "plugin_run.h"

using holdfast::test::PluginRun;

namespace {
std::string location(const PluginRun& r) {
  for (const auto& h : r.ctx.resp_headers)
    if (h.name == "Location") return h.value;
  return "<none>";
}
}  // namespace

TEST(Redirect, RegexUriLocationIsEscaped) {
  PluginRun r("redirect", R"j({"regex_uri": ["^/r/(.*)", "/new/$1"]})j", "/r/x%0d%0aSet-Cookie:%20a=b");
  EXPECT_EQ(r.action, holdfast::plugins::Action::respond);
  EXPECT_EQ(r.ctx.resp_status, 302);
  EXPECT_EQ(location(r), "/new/x%0D%0ASet-Cookie: a=b");
}

TEST(Redirect, UriTemplateLocationIsEscaped) {
  PluginRun r("redirect", R"j({"uri": "$uri", "ret_code": 301})j", "/ru/x%0d%0aSet-Cookie:%20a=b");
  EXPECT_EQ(r.ctx.resp_status, 301);
  EXPECT_EQ(location(r), "/ru/x%0D%0ASet-Cookie: a=b");
}

TEST(Redirect, EncodeUriEncodesThePathPart) {
  PluginRun r("redirect", R"j({"uri": "$uri?a=b c", "encode_uri": true, "append_query_string": true})j",
              "/e/x%0d%0ay%20z?q=1");
  EXPECT_EQ(location(r), "/e/x%0D%0Ay%20z?a=b c&q=1");
}

TEST(Redirect, RegexUriMatchLimitAnswers500WithoutLocation) {
  PluginRun r("redirect", R"j({"regex_uri": ["^/(a+)+$", "/x"]})j", "/" + std::string(40, 'a') + "b");
  EXPECT_EQ(r.action, holdfast::plugins::Action::respond);
  EXPECT_EQ(r.ctx.resp_status, 500);
  EXPECT_EQ(r.ctx.resp_body, "");
}
