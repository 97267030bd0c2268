// response-rewrite (priority 899): changes the status, headers or body of
// the response (upstream or plugin generated), optionally only when `vars`
// match.
#include <fmt/format.h>

#include "core/base64.h"
#include "core/log.h"
#include "plugins/common.h"

namespace holdfast::plugins {
namespace {

struct Filter {
  std::shared_ptr<const UserRegex> re;
  RegexTemplate replace;  // ngx.re.sub's: $1, ${1}, $0, $$
  bool global = false;
};

class ResponseRewrite final : public Plugin {
 public:
  std::optional<int> status;
  std::optional<std::string> body;
  HeaderOps headers;
  std::shared_ptr<const router::Expr> vars;
  std::vector<Filter> filters;

  bool wants_body(const RequestCtx& ctx) const override {
    return !filters.empty() && (!vars || vars->eval(ctx));
  }
  void body_filter(RequestCtx& ctx, std::string& b) const override {
    if (filters.empty() || (vars && !vars->eval(ctx))) return;
    for (const auto& f : filters) {
      std::string out;
      auto n = regex_substitute(*f.re, b, f.replace, f.global, out);
      // A regex error (the match limit) is logged, as APISIX does, and that
      // filter leaves the body as it was (APISIX would send an empty body).
      if (!n) log::error("response-rewrite: regex \"{}\" substitutes failed: {}", f.re->pattern(), n.error());
      else if (*n > 0) b = std::move(out);
    }
  }

  void header_filter(RequestCtx& ctx) const override {
    if (vars && !vars->eval(ctx)) return;
    if (status) ctx.resp_status_override = *status;
    if (body) ctx.resp_body_override = *body;
    for (const auto& [k, v] : headers.set) ctx.set_response_header(k, router::expand_vars(v, ctx));
    for (const auto& [k, v] : headers.add) ctx.add_response_header(k, router::expand_vars(v, ctx));
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
    auto d = holdfast::base64_decode(*p->body);
    if (!d) c.fail("property \"body\" validation failed: invalid base64");
    else p->body = *d;
  }
  if (const json::array* fs = c.array("filters", false, 1)) {
    if (p->body) c.fail("only one of body or filters is allowed");
    for (const auto& fv : *fs) {
      if (c.failed()) break;
      if (!fv.is_object()) { c.fail("property \"filters\" validation failed: expected objects"); break; }
      Checker fc(fv.as_object(), "filter");
      fc.only({"regex", "replace", "scope", "options"});
      auto regex = fc.str("regex", true, 1);
      auto replace = fc.str("replace", true);
      auto scope = fc.one_of("scope", {"once", "global"}, "once");
      auto options = fc.str("options").value_or("jo");
      if (fc.failed()) { c.fail("property \"filters\" validation failed: " + fc.error()); break; }
      auto flags = parse_regex_options(options);
      if (!flags) { c.fail("property \"filters\" validation failed: options \"" + options + "\": " + flags.error()); break; }
      auto re = UserRegex::compile(*regex, *flags);
      if (!re) { c.fail("invalid filters regex '" + *regex + "': " + re.error()); break; }
      auto tmpl = RegexTemplate::parse(*replace);
      if (!tmpl) { c.fail("invalid filters replace '" + *replace + "': " + tmpl.error()); break; }
      Filter f;
      f.re = std::move(*re);
      f.replace = std::move(*tmpl);
      f.global = *scope == "global";
      p->filters.push_back(std::move(f));
    }
  }
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
