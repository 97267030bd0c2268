// response-rewrite (priority 899): changes the status, headers or body of
// the response (upstream or plugin generated), optionally only when `vars`
// match. A body that arrives gzip- or br-encoded is decoded before `filters`
// run, bounded by max_resp_body_size (http/content_decode.h).
#include <fmt/format.h>

#include <algorithm>

#include "core/base64.h"
#include "core/log.h"
#include "http/content_decode.h"
#include "plugins/common.h"

namespace holdfast::plugins {
namespace {

// APISIX's default: what hold_body_chunk buffers before it cuts the body.
constexpr int64_t kDefaultMaxBody = 64 * 1024 * 1024;

struct Filter {
  std::shared_ptr<const UserRegex> re;
  RegexTemplate replace;  // ngx.re.sub's: $1, ${1}, $0, $$
  bool global = false;
};

// `headers` in APISIX's two forms: a flat map (= set), or 3.x's
// {add: ["Name: value", ...], set: {Name: value}, remove: [Name, ...]}.
struct ResponseHeaderOps {
  HeaderList add, set;
  std::vector<std::string> remove;
  // An `add` item the schema lets through but APISIX's runtime split
  // (^([^:\s]+)\s*:\s*([^:]+)$) refuses: APISIX then applies none of the
  // header edits and logs "failed to create header operation"; so does this.
  std::string add_error;
};

std::optional<std::string> scalar(const json::value& x) {
  if (x.is_string()) return std::string(x.as_string());
  if (x.is_number()) return json::serialize(x);
  return std::nullopt;
}

// Fixed patterns from APISIX's schema and code: they always compile.
using FixedRe = const std::shared_ptr<const UserRegex>;

// headers.add items: "Name: value" (the schema's pattern).
bool add_item_ok(std::string_view s) {
  static FixedRe re = *UserRegex::compile(R"(^[^:]+:[^:]*[^/]$)");
  return re->find(s) == RegexMatch::match;
}
// Header names in set's keys and remove's items.
bool name_ok(std::string_view s) {
  static FixedRe re = *UserRegex::compile(R"(^[^:]+$)");
  return re->find(s) == RegexMatch::match;
}

// The flat form's schema: an object whose keys without ':' have string or
// number values (keys with ':' are left to check_set_headers, as in APISIX).
bool flat_schema_ok(const json::object& o) {
  if (o.empty()) return false;
  for (const auto& kv : o)
    if (kv.key().find(':') == std::string_view::npos && !scalar(kv.value())) return false;
  return true;
}

bool structured_schema_ok(const json::object& o) {
  if (auto it = o.find("add"); it != o.end()) {
    if (!it->value().is_array() || it->value().as_array().empty()) return false;
    for (const auto& e : it->value().as_array())
      if (!e.is_string() || !add_item_ok(e.as_string())) return false;
  }
  if (auto it = o.find("set"); it != o.end()) {
    if (!it->value().is_object() || it->value().as_object().empty()) return false;
    for (const auto& kv : it->value().as_object())
      if (!scalar(kv.value())) return false;
  }
  if (auto it = o.find("remove"); it != o.end()) {
    if (!it->value().is_array() || it->value().as_array().empty()) return false;
    for (const auto& e : it->value().as_array())
      if (!e.is_string() || !name_ok(e.as_string())) return false;
  }
  return true;
}

Result<ResponseHeaderOps> parse_headers(const json::value& v) {
  if (!v.is_object()) return Error{"property \"headers\" validation failed: wrong type: expected object"};
  const json::object& o = v.as_object();
  // anyOf: the flat map, or the 3.x form.
  if (!flat_schema_ok(o) && !structured_schema_ok(o))
    return Error{"property \"headers\" validation failed: object matches none of the required"};
  ResponseHeaderOps ops;
  auto is_table = [&](const char* k) {
    auto it = o.find(k);
    return it != o.end() && (it->value().is_object() || it->value().is_array());
  };
  if (!is_table("add") && !is_table("set") && !is_table("remove")) {
    // APISIX's check_set_headers, in its order.
    for (const auto& kv : o) {
      auto val = scalar(kv.value());
      if (!val) return Error{"invalid type as header value"};
      if (kv.key().empty()) return Error{"invalid field length in header"};
      ops.set.emplace_back(std::string(kv.key()), std::move(*val));
    }
    return ops;
  }
  if (auto it = o.find("add"); it != o.end()) {
    static FixedRe split = *UserRegex::compile(R"(^([^:\s]+)\s*:\s*([^:]+)$)");
    for (const auto& e : it->value().as_array()) {
      std::string_view item = e.as_string();
      RegexCaptures caps;
      if (split->find(item, 0, &caps) != RegexMatch::match) {
        ops.add_error = fmt::format("headers.add item \"{}\" is not \"Name: value\"", item);
        break;
      }
      ops.add.emplace_back(std::string(caps[1]), std::string(caps[2]));
    }
  }
  if (auto it = o.find("set"); it != o.end())
    for (const auto& kv : it->value().as_object()) ops.set.emplace_back(std::string(kv.key()), *scalar(kv.value()));
  if (auto it = o.find("remove"); it != o.end())
    for (const auto& e : it->value().as_array()) ops.remove.emplace_back(e.as_string());
  return ops;
}

class ResponseRewrite final : public Plugin {
 public:
  std::optional<int> status;
  std::optional<std::string> body;
  std::optional<ResponseHeaderOps> headers;
  std::shared_ptr<const router::Expr> vars;
  std::vector<Filter> filters;
  size_t max_body = kDefaultMaxBody;

  bool filtering(const RequestCtx& ctx) const {
    return std::find(ctx.body_filters_on.begin(), ctx.body_filters_on.end(), this) != ctx.body_filters_on.end();
  }

  size_t wants_body(const RequestCtx& ctx) const override { return filtering(ctx) ? max_body : 0; }

  void body_filter(RequestCtx& ctx, std::string& b) const override {
    if (!filtering(ctx)) return;
    // As APISIX's hold_body_chunk: a body longer than max_resp_body_size is
    // cut there, and the filters see what is left.
    const bool cut = b.size() >= max_body;
    if (cut) b.resize(max_body);
    std::string_view coding = ctx.upstream_resp ? ctx.upstream_resp->header("content-encoding") : std::string_view();
    if (!coding.empty()) {
      // APISIX decodes gzip and br before filtering (its Content-Encoding is
      // already gone). The decoded body is bounded by max_resp_body_size
      // too: a small compressed body cannot inflate past it.
      std::string decoded;
      auto d = http::decode_content(coding, b, max_body, decoded);
      using S = http::DecodeStatus;
      if (d.status == S::unsupported) {
        log::error("response-rewrite: filters may not work as expected due to unsupported compression encoding type: {}",
                   coding);
        return;
      }
      // A stream that ends early is usable only when it was cut here.
      if (d.status == S::corrupt || (d.status == S::incomplete && !cut)) {
        log::error("response-rewrite: filters may not work as expected: {}",
                   d.status == S::corrupt ? d.error : "the encoded body ends inside the stream");
        return;
      }
      b = std::move(decoded);
    }
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
    // Evaluated once, here, before status_code changes what $status says.
    if (vars && !vars->eval(ctx)) return;
    if (status) ctx.resp_status_override = *status;
    if (body || !filters.empty()) {
      // APISIX's clear_header_as_body_modified: the body changes, so its
      // length, coding and cache validators no longer hold.
      for (const char* h : {"Content-Encoding", "Last-Modified", "ETag"}) ctx.remove_response_header(h);
      if (body) ctx.resp_body_override = *body;
      else ctx.body_filters_on.push_back(this);
    }
    if (!headers) return;
    if (!headers->add_error.empty()) {
      log::error("response-rewrite: failed to create header operation: {}", headers->add_error);
      return;
    }
    // APISIX's order: add, then set (replacing what add put there), then remove.
    for (const auto& [k, v] : headers->add) ctx.add_response_header(k, router::expand_vars(v, ctx));
    for (const auto& [k, v] : headers->set) ctx.set_response_header(k, router::expand_vars(v, ctx));
    for (const auto& k : headers->remove) ctx.remove_response_header(k);
  }
};

// Every field of APISIX's schema is implemented; its filters' items have no
// additionalProperties = false either.
const FieldRules kFilter{.implemented = {"regex", "replace", "scope", "options"}};
const FieldRules kFields{.implemented = {"status_code", "body", "body_base64", "headers", "vars", "filters",
                                         "max_resp_body_size"},
                         .nested = {{"filters", &kFilter}}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<ResponseRewrite>();
  Checker c(conf, "response-rewrite");
  c.only(kFields.implemented);
  if (auto s = c.integer("status_code", false, 200, 598)) p->status = static_cast<int>(*s);
  if (auto m = c.integer("max_resp_body_size", false, 1)) p->max_body = static_cast<size_t>(*m);
  p->body = c.str("body");
  if (c.boolean("body_base64").value_or(false)) {
    // As APISIX's check_schema with ngx.decode_base64 (nginx refuses a
    // length of 4n+1 before any '=').
    std::optional<std::string> d;
    if (p->body && !p->body->empty() && p->body->substr(0, p->body->find('=')).size() % 4 != 1)
      d = holdfast::base64_decode(*p->body);
    if (!d) c.fail("invalid base64 content");
    else p->body = *d;
  }
  if (const json::array* fs = c.array("filters", false, 1)) {
    if (p->body) c.fail("only one of body or filters is allowed");
    for (const auto& fv : *fs) {
      if (c.failed()) break;
      if (!fv.is_object()) { c.fail("property \"filters\" validation failed: expected objects"); break; }
      Checker fc(fv.as_object(), "filter");
      fc.only(kFilter.implemented);
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
  if (const json::value* h = c.get("headers"); h && !c.failed()) {
    auto ops = parse_headers(*h);
    if (!ops) c.fail(ops.error());
    else p->headers = std::move(*ops);
  }
  if (const json::value* v = c.get("vars")) {
    auto e = router::Expr::compile(*v);
    if (!e) c.fail(e.error());
    else p->vars = *e;
  }
  return done(c, p);
}

}  // namespace

extern const PluginDef kResponseRewrite{"response-rewrite", 899, false, &create, nullptr, nullptr, &kFields};

}  // namespace holdfast::plugins
