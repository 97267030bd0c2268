// fault-injection (priority 11000): delays and/or aborts a share of the
// requests, optionally only those matching `vars` expressions.
#include <fmt/format.h>

#include <boost/json.hpp>

#include "plugins/common.h"

namespace holdfast::plugins {
namespace {

struct Fault {
  bool set = false;
  std::optional<int64_t> percentage;
  std::vector<std::shared_ptr<const router::Expr>> vars;  // any one matching is enough
  bool applies(const RequestCtx& ctx) const {
    if (!set) return false;
    if (!vars.empty()) {
      bool any = false;
      for (const auto& v : vars)
        if (v->eval(ctx)) { any = true; break; }
      if (!any) return false;
    }
    return sample(percentage);
  }
};

class FaultInjection final : public Plugin {
 public:
  Fault abort, delay;
  int abort_status = 0;
  std::string abort_body;
  struct HeaderValue {
    std::string text;
    std::optional<std::string> number;
  };
  std::vector<std::pair<std::string, HeaderValue>> abort_headers;
  double duration = 0;

  Action rewrite(RequestCtx& ctx) const override {
    if (delay.applies(ctx)) ctx.delay_seconds = duration;
    if (abort.applies(ctx)) {
      // APISIX resolves variables (core.utils.resolve_var) in the body and in
      // string header values; a number goes out as Lua prints it.
      ctx.respond(abort_status, router::resolve_var(abort_body, ctx), "");
      for (const auto& [k, v] : abort_headers)
        ctx.add_reply_header(k, v.number ? *v.number : router::resolve_var(v.text, ctx));
      return Action::respond;
    }
    return Action::next;
  }
};

Status parse_fault(Checker& parent, const json::object& o, const char* name, Fault& f) {
  Checker c(o, name);
  f.set = true;
  f.percentage = c.integer("percentage", false, 0, 100);
  c.array("vars");
  if (c.failed()) return Error{c.error()};
  return {};
}

// Each item of `vars` is one lua-resty-expr expression. APISIX compiles
// them after its schema check and answers with the expression's own error,
// without a property path (nor lua-resty-expr's prefix).
Status compile_vars(const json::object& o, Fault& f) {
  const json::value* vars = o.if_contains("vars");
  if (!vars || !vars->is_array()) return {};
  for (const auto& v : vars->as_array()) {
    auto e = router::Expr::compile(v);
    if (!e) {
      std::string_view why = e.error();
      if (why.starts_with(router::kVarsError)) why.remove_prefix(router::kVarsError.size());
      return Error{std::string(why)};
    }
    f.vars.push_back(*e);
  }
  return {};
}

// APISIX's schema: at least one property, none of them required.
const FieldRules kAbort{.implemented = {"http_status", "body", "headers", "percentage", "vars"}};
const FieldRules kDelay{.implemented = {"duration", "percentage", "vars"}};
const FieldRules kFields{.implemented = {"abort", "delay"},
                         .nested = {{"abort", &kAbort}, {"delay", &kDelay}},
                         .min_properties = 1};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<FaultInjection>();
  Checker c(conf, "fault-injection");
  c.only(kFields.implemented);
  if (const json::object* a = c.object("abort")) {
    Checker ac(*a, "abort");
    ac.only(kAbort.implemented);
    p->abort_status = static_cast<int>(ac.integer("http_status", true, 200).value_or(0));
    p->abort_body = ac.str("body").value_or("");
    if (const json::object* h = ac.object("headers")) {
      // APISIX's schema: at least one header, names without ':', values
      // strings or numbers.
      if (h->empty())
        ac.fail(
            "property \"headers\" validation failed: expect object to have at least 1 properties");
      for (const auto& kv : *h) {
        if (ac.failed()) break;
        if (kv.key().empty() || kv.key().find(':') != std::string_view::npos)
          ac.fail(fmt::format(
              "property \"headers\" validation failed: additional properties forbidden, found {}",
              std::string_view(kv.key())));
        else if (kv.value().is_string())
          p->abort_headers.push_back(
              {std::string(kv.key()), {std::string(kv.value().as_string()), std::nullopt}});
        else if (kv.value().is_number())
          p->abort_headers.push_back({std::string(kv.key()), {"", lua_number(kv.value())}});
        else
          ac.fail(
              fmt::format("property \"headers\" validation failed: property \"{}\" validation "
                          "failed: value should match only one schema, but matches none",
                          std::string_view(kv.key())));
      }
    }
    if (auto s = parse_fault(c, *a, "abort", p->abort); !s) ac.fail(s.error());
    if (ac.failed()) c.fail("property \"abort\" validation failed: " + ac.error());
  }
  if (const json::object* d = c.object("delay")) {
    Checker dc(*d, "delay");
    dc.only(kDelay.implemented);
    p->duration = dc.number("duration", true, 0).value_or(0);
    if (auto s = parse_fault(c, *d, "delay", p->delay); !s) dc.fail(s.error());
    if (dc.failed()) c.fail("property \"delay\" validation failed: " + dc.error());
  }
  // `{}` is refused by compile_chain's screen (APISIX's minProperties);
  // with neither abort nor delay the plugin does nothing, as in APISIX.
  for (auto [key, fault] : {std::pair{"abort", &p->abort}, std::pair{"delay", &p->delay}})
    if (const json::value* v = conf.if_contains(key); v && v->is_object() && !c.failed())
      if (auto st = compile_vars(v->as_object(), *fault); !st) c.fail(st.error());
  return done(c, p);
}

}  // namespace

extern const PluginDef kFaultInjection{"fault-injection", 11000, false, &create, nullptr, nullptr, &kFields};

}  // namespace holdfast::plugins
