// proxy-rewrite (priority 1008): rewrites the upstream request's uri
// (template or regex), method, Host and headers.
#include <re2/re2.h>

#include "plugins/common.h"

namespace holdfast::plugins {
namespace {

// Expands $1..$9 from regex captures and $var from the request.
std::string expand_captures(std::string_view tmpl, const std::vector<std::string>& caps, const RequestCtx& ctx) {
  std::string out;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] == '$' && i + 1 < tmpl.size() && tmpl[i + 1] >= '0' && tmpl[i + 1] <= '9') {
      size_t n = tmpl[i + 1] - '0';
      if (n < caps.size()) out += caps[n];
      ++i;
    } else if (tmpl[i] == '$') {
      size_t j = i + 1;
      bool brace = j < tmpl.size() && tmpl[j] == '{';
      if (brace) ++j;
      size_t start = j;
      while (j < tmpl.size() && (isalnum(static_cast<unsigned char>(tmpl[j])) || tmpl[j] == '_')) ++j;
      std::string_view name = tmpl.substr(start, j - start);
      if (brace && j < tmpl.size() && tmpl[j] == '}') ++j;
      if (name.empty()) { out += '$'; continue; }
      if (auto v = ctx.var(name)) out += *v;
      i = j - 1;
    } else {
      out += tmpl[i];
    }
  }
  return out;
}

class ProxyRewrite final : public Plugin {
 public:
  std::optional<std::string> uri, method, host;
  RegexPairs regex_uri;
  HeaderOps headers;

  Action rewrite(RequestCtx& ctx) const override {
    std::string query = std::string(ctx.req->query);
    std::optional<std::string> new_path;
    if (uri) {
      new_path = router::expand_vars(*uri, ctx);
    } else if (!regex_uri.empty()) {
      for (const auto& [re, tmpl] : regex_uri) {
        int n = re->NumberOfCapturingGroups();
        std::vector<re2::StringPiece> pieces(n + 1);
        if (re->Match(ctx.uri, 0, ctx.uri.size(), re2::RE2::UNANCHORED, pieces.data(), n + 1)) {
          std::vector<std::string> caps;
          for (auto& p : pieces) caps.emplace_back(p.data() ? std::string(p) : std::string());
          // Replace the matched part, keep the rest (ngx.re.sub semantics).
          size_t off = pieces[0].data() - ctx.uri.data();
          new_path = ctx.uri.substr(0, off) + expand_captures(tmpl, caps, ctx) + ctx.uri.substr(off + pieces[0].size());
          break;
        }
      }
    }
    if (new_path) {
      // A template that carries its own query string replaces the original one.
      if (new_path->find('?') != std::string::npos || query.empty()) ctx.upstream_target = *new_path;
      else ctx.upstream_target = *new_path + "?" + query;
    }
    if (method) ctx.upstream_method = *method;
    if (host) ctx.upstream_host = *host;
    for (const auto& [k, v] : headers.set) ctx.set_request_header(k, expand_captures(v, {}, ctx));
    for (const auto& [k, v] : headers.add) ctx.req_add.emplace_back(k, expand_captures(v, {}, ctx));
    for (const auto& k : headers.remove) ctx.req_remove.push_back(k);
    return Action::next;
  }
};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<ProxyRewrite>();
  Checker c(conf, "proxy-rewrite");
  c.only({"uri", "regex_uri", "method", "host", "headers", "use_real_request_uri_unsafe"});
  p->uri = c.str("uri", false, 1, 4096);
  if (p->uri && (*p->uri)[0] != '/' && (*p->uri)[0] != '$') c.fail("property \"uri\" validation failed: must start with /");
  p->regex_uri = parse_regex_pairs(c, "regex_uri");
  p->method = c.one_of("method", {"GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "MKCOL", "COPY", "MOVE",
                                  "PROPFIND", "LOCK", "UNLOCK", "PATCH", "TRACE"}, nullptr);
  p->host = c.str("host");
  c.boolean("use_real_request_uri_unsafe");
  if (const json::value* h = c.get("headers")) {
    auto ops = parse_header_ops(*h);
    if (!ops) c.fail(ops.error());
    else p->headers = *ops;
  }
  return done(c, p);
}

}  // namespace

extern const PluginDef kProxyRewrite{"proxy-rewrite", 1008, false, &create, nullptr};

}  // namespace holdfast::plugins
