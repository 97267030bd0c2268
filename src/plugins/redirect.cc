// redirect (priority 900): answers with a redirect to a uri template, a
// regex rewrite of the uri, or the https version of the request.
#include <re2/re2.h>

#include "plugins/common.h"

namespace holdfast::plugins {
namespace {

class Redirect final : public Plugin {
 public:
  std::optional<std::string> uri;
  std::vector<std::pair<std::shared_ptr<re2::RE2>, std::string>> regex_uri;
  bool http_to_https = false, append_query = false, encode_uri = false;
  int ret_code = 302;

  Action rewrite(RequestCtx& ctx) const override {
    std::string target;
    int code = ret_code;
    if (http_to_https) {
      auto proto = ctx.request_header("X-Forwarded-Proto");
      std::string scheme = proto ? *proto : ctx.scheme;
      if (scheme == "https") return Action::next;
      target = "https://" + ctx.host + std::string(ctx.req->target);
      code = (ctx.req->method == "GET" || ctx.req->method == "HEAD") ? 301 : 308;
    } else if (uri) {
      target = router::expand_vars(*uri, ctx);
    } else {
      bool matched = false;
      for (const auto& [re, tmpl] : regex_uri) {
        std::string s = ctx.uri;
        if (re2::RE2::Replace(&s, *re, tmpl)) { target = s; matched = true; break; }
      }
      if (!matched) return Action::next;
    }
    if (append_query && !ctx.req->query.empty())
      target += (target.find('?') == std::string::npos ? "?" : "&") + std::string(ctx.req->query);
    ctx.respond(code, "", "");
    ctx.resp_headers.emplace_back("Location", target);
    return Action::respond;
  }
};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<Redirect>();
  Checker c(conf, "redirect");
  c.only({"uri", "regex_uri", "http_to_https", "ret_code", "encode_uri", "append_query_string"});
  p->uri = c.str("uri", false, 2);
  p->http_to_https = c.boolean("http_to_https").value_or(false);
  p->ret_code = static_cast<int>(c.integer("ret_code", false, 200).value_or(302));
  p->encode_uri = c.boolean("encode_uri").value_or(false);
  p->append_query = c.boolean("append_query_string").value_or(false);
  if (const json::array* r = c.array("regex_uri", false, 2)) {
    for (size_t i = 0; i + 1 < r->size() && !c.failed(); i += 2) {
      if (!(*r)[i].is_string() || !(*r)[i + 1].is_string()) { c.fail("property \"regex_uri\" validation failed: expected strings"); break; }
      re2::RE2::Options o;
      o.set_log_errors(false);
      auto re = std::make_shared<re2::RE2>(std::string((*r)[i].as_string()), o);
      if (!re->ok()) { c.fail("invalid regex_uri: " + re->error()); break; }
      // APISIX templates use $1; RE2 rewrite strings use \1.
      std::string tmpl(std::string((*r)[i + 1].as_string()));
      std::string conv;
      for (size_t k = 0; k < tmpl.size(); ++k) {
        bool group = tmpl[k] == '$' && k + 1 < tmpl.size() && isdigit(static_cast<unsigned char>(tmpl[k + 1]));
        if (group) conv += '\\';
        else if (tmpl[k] == '\\') conv += "\\\\";
        else conv += tmpl[k];
      }
      p->regex_uri.emplace_back(re, conv);
    }
  }
  int n = (p->uri ? 1 : 0) + (p->http_to_https ? 1 : 0) + (c.has("regex_uri") ? 1 : 0);
  if (!c.failed() && n != 1) c.fail("value should match only one schema, but matches " + std::to_string(n) + " (uri, regex_uri, http_to_https)");
  if (!c.failed() && p->http_to_https && p->append_query) c.fail("only one of `http_to_https` and `append_query_string` can be configured.");
  return done(c, p);
}

}  // namespace

extern const PluginDef kRedirect{"redirect", 900, false, &create, nullptr};

}  // namespace holdfast::plugins
