// response-rewrite (priority 899): changes the status, headers or body of
// the response (upstream or plugin generated), optionally only when `vars`
// match.
#include <fmt/format.h>

#include "plugins/common.h"

namespace holdfast::plugins {
namespace {

std::optional<std::string> base64_decode(std::string_view in) {
  static const std::string chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  int val = 0, bits = -8;
  for (char c : in) {
    if (c == '=') break;
    auto pos = chars.find(c);
    if (pos == std::string::npos) return std::nullopt;
    val = (val << 6) + static_cast<int>(pos);
    bits += 6;
    if (bits >= 0) { out += static_cast<char>((val >> bits) & 0xFF); bits -= 8; }
  }
  return out;
}

class ResponseRewrite final : public Plugin {
 public:
  std::optional<int> status;
  std::optional<std::string> body;
  HeaderOps headers;
  std::shared_ptr<const router::Expr> vars;

  void header_filter(RequestCtx& ctx) const override {
    if (vars && !vars->eval(ctx)) return;
    if (status) ctx.resp_status_override = *status;
    if (body) ctx.resp_body_override = *body;
    for (const auto& [k, v] : headers.set) ctx.resp_set.emplace_back(k, router::expand_vars(v, ctx));
    for (const auto& [k, v] : headers.add) ctx.resp_add.emplace_back(k, router::expand_vars(v, ctx));
    for (const auto& k : headers.remove) ctx.resp_remove.push_back(k);
  }
};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<ResponseRewrite>();
  Checker c(conf, "response-rewrite");
  c.only({"status_code", "body", "body_base64", "headers", "vars", "filters"});
  if (auto s = c.integer("status_code", false, 200, 598)) p->status = static_cast<int>(*s);
  p->body = c.str("body");
  if (c.boolean("body_base64").value_or(false) && p->body) {
    auto d = base64_decode(*p->body);
    if (!d) c.fail("property \"body\" validation failed: invalid base64");
    else p->body = *d;
  }
  if (c.has("filters") && !c.failed()) c.fail("filters are not supported yet");
  if (const json::value* h = c.get("headers")) {
    auto ops = parse_header_ops(*h);
    if (!ops) c.fail(ops.error());
    else p->headers = *ops;
  }
  if (const json::value* v = c.get("vars")) {
    auto e = router::Expr::compile(*v);
    if (!e) c.fail(e.error());
    else p->vars = *e;
  }
  return done(c, p);
}

}  // namespace

extern const PluginDef kResponseRewrite{"response-rewrite", 899, false, &create, nullptr};

}  // namespace holdfast::plugins
