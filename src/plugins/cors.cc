// cors (priority 4000): answers every OPTIONS request with an empty 200 and
// adds Access-Control-* headers when the request's Origin is allowed.
#include <fmt/format.h>

#include <unordered_map>

#include "core/log.h"
#include "http/codec.h"
#include "plugins/common.h"

namespace holdfast::plugins {
namespace {

// The items of a comma list as APISIX's ([^,]+) takes them: not trimmed.
std::vector<std::string_view> items(std::string_view s) {
  std::vector<std::string_view> out;
  while (true) {
    size_t c = s.find(',');
    if (!s.substr(0, c).empty()) out.push_back(s.substr(0, c));
    if (c == std::string_view::npos) break;
    s.remove_prefix(c + 1);
  }
  return out;
}

// The Origin the client sent. APISIX reads it in cors's rewrite phase,
// before proxy-rewrite (a lower priority) can change it; the client's own
// header is that value here. Absent: no value.
std::optional<std::string_view> client_origin(const RequestCtx& ctx) {
  for (const auto& h : ctx.req->headers)
    if (http::iequals(h.name, "origin")) return h.value;
  return std::nullopt;
}

// Any regex of the list finds a match in `origin` (APISIX joins them with
// "|" into one ngx.re.find, an unanchored search). A regex error (the match
// limit) matches nothing.
bool any_regex(const std::vector<std::shared_ptr<const UserRegex>>& list, std::string_view origin) {
  for (const auto& re : list) {
    std::string why;
    RegexMatch m = re->find(origin, 0, nullptr, &why);
    if (m == RegexMatch::error)
      log::error("cors: origin regex '{}' failed: {}", re->pattern(), why);
    if (m == RegexMatch::match) return true;
  }
  return false;
}

// APISIX's process_with_allow_origins: "**" is the request's origin (or
// "*" without one); a comma list allows only an origin on it; a single
// value is returned as is and the caller compares it.
std::optional<std::string> from_list(const std::string& conf,
                                     std::optional<std::string_view> origin) {
  if (conf == "**") return origin ? std::string(*origin) : std::string("*");
  if (conf.find(',') == std::string::npos) return conf;
  for (std::string_view o : items(conf))
    if (origin && o == *origin) return std::string(*origin);
  return std::nullopt;
}

// APISIX's match_origins.
bool matches(std::optional<std::string_view> origin, const std::optional<std::string>& allowed) {
  return allowed && (*allowed == "*" || (origin && *origin == *allowed));
}

// plugin_metadata for cors: `allow_origins`, named origin lists (each in
// allow_origins' own syntax) that a route's `allow_origins_by_metadata`
// refers to.
struct CorsMetadata final : Metadata {
  std::unordered_map<std::string, std::string> allow_origins;
};

class Cors final : public Plugin {
 public:
  std::string allow_origins = "*", allow_methods = "*", allow_headers = "*", expose_headers;
  int64_t max_age = 5;
  bool allow_credential = false;
  std::vector<std::shared_ptr<const UserRegex>> origin_regex, timing_regex;
  std::optional<std::string> timing_allow_origins;
  std::vector<std::string> origins_by_metadata;  // names in the metadata's allow_origins

  // APISIX's process_with_allow_origins_by_metadata: the origin when one of
  // the named metadata lists allows it.
  std::optional<std::string> metadata_allow(const RequestCtx& ctx, std::optional<std::string_view> origin) const {
    const auto* md = MetadataTable::of<CorsMetadata>(ctx, "cors");
    if (!md) return std::nullopt;
    for (const auto& name : origins_by_metadata) {
      auto it = md->allow_origins.find(name);
      if (it == md->allow_origins.end()) continue;
      if (matches(origin, from_list(it->second, origin))) return origin ? std::string(*origin) : std::string("*");
    }
    return std::nullopt;
  }

  Action rewrite(RequestCtx& ctx) const override {
    if (ctx.req->method == "OPTIONS") {
      ctx.respond(200, "", "");
      return Action::respond;
    }
    return Action::next;
  }

  void header_filter(RequestCtx& ctx) const override {
    const auto origin = client_origin(ctx);
    // With allow_origins_by_regex, allow_origins is not consulted (APISIX):
    // the answer is the request's origin when a regex finds it, never "*".
    std::optional<std::string> allow;
    // APISIX: the metadata lists first; when they do not allow the origin,
    // the route's own origins apply only if they are not the default "*".
    bool local = true;
    if (!origins_by_metadata.empty()) {
      allow = metadata_allow(ctx, origin);
      local = !matches(origin, allow) && allow_origins != "*";
    }
    if (!local) {
    } else if (!origin_regex.empty()) {
      if (origin && any_regex(origin_regex, *origin)) allow = std::string(*origin);
    } else {
      allow = from_list(allow_origins, origin);
    }
    if (!matches(origin, allow)) allow.reset();
    if (allow_origins != "*") ctx.add_response_header("Vary", "Origin");
    if (allow) {
      ctx.set_response_header("Access-Control-Allow-Origin", *allow);
      std::string methods = allow_methods;
      if (methods == "**") methods = "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE";
      ctx.set_response_header("Access-Control-Allow-Methods", methods);
      ctx.set_response_header("Access-Control-Max-Age", std::to_string(max_age));
      if (!expose_headers.empty())
        ctx.set_response_header("Access-Control-Expose-Headers", expose_headers);
      if (allow_headers != "**")
        ctx.set_response_header("Access-Control-Allow-Headers", allow_headers);
      else if (auto h = ctx.request_header("Access-Control-Request-Headers"))
        ctx.set_response_header("Access-Control-Allow-Headers", *h);
      if (allow_credential) ctx.set_response_header("Access-Control-Allow-Credentials", "true");
    }
    // Timing-Allow-Origin: its regexes when set, else its list, each as above.
    std::optional<std::string> timing;
    if (!timing_regex.empty()) {
      if (origin && any_regex(timing_regex, *origin)) timing = std::string(*origin);
    } else if (timing_allow_origins) {
      timing = from_list(*timing_allow_origins, origin);
    }
    if (matches(origin, timing)) ctx.set_response_header("Timing-Allow-Origin", *timing);
  }
};

// APISIX's origins_pattern: ^(\*|\*\*|null|\w+://[^,]+(,\w+://[^,]+)*)$
bool valid_origins(std::string_view s) {
  if (s == "*" || s == "**" || s == "null") return true;
  if (s.empty() || s.front() == ',' || s.back() == ',' || s.find(",,") != std::string_view::npos)
    return false;
  for (std::string_view o : items(s)) {
    size_t sep = o.find("://");
    if (sep == std::string_view::npos || sep == 0 || sep + 3 >= o.size()) return false;
    for (size_t i = 0; i < sep; ++i)
      if (!isalnum(static_cast<unsigned char>(o[i])) && o[i] != '_') return false;
  }
  return true;
}

Result<std::vector<std::shared_ptr<const UserRegex>>> compile_list(Checker& c, const char* key) {
  std::vector<std::shared_ptr<const UserRegex>> out;
  if (auto rs = c.str_array(key, 1)) {
    for (const auto& r : *rs) {
      if (r.empty() || r.size() > 4096)
        return Error{
            fmt::format("property \"{}\" validation failed: items must be 1-4096 characters", key)};
      auto re = UserRegex::compile(r);
      if (!re) return Error{fmt::format("invalid {} '{}': {}", key, r, re.error())};
      out.push_back(std::move(*re));
    }
  }
  return out;
}

const FieldRules kMetadataFields{.implemented = {"allow_origins"}};

Result<std::shared_ptr<const Metadata>> create_metadata(const json::object& conf) {
  auto m = std::make_shared<CorsMetadata>();
  Checker c(conf, "cors metadata");
  if (const json::object* map = c.object("allow_origins")) {
    for (const auto& kv : *map) {
      const json::string* v = kv.value().if_string();
      if (!v || !valid_origins(std::string_view(*v)))
        return Error{fmt::format("property \"allow_origins\" validation failed: failed to validate {} (matching "
                                 "\"^(\\*|\\*\\*|null|\\w+://[^,]+(,\\w+://[^,]+)*)$\")",
                                 std::string(kv.key()))};
      m->allow_origins.emplace(std::string(kv.key()), std::string(*v));
    }
  }
  if (c.failed()) return Error{c.error()};
  return std::shared_ptr<const Metadata>(std::move(m));
}

// Every field of APISIX's schema is implemented.
const FieldRules kFields{.implemented = {"allow_origins", "allow_methods", "allow_headers", "expose_headers", "max_age",
                                         "allow_credential", "allow_origins_by_regex", "allow_origins_by_metadata",
                                         "timing_allow_origins", "timing_allow_origins_by_regex"}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<Cors>();
  Checker c(conf, "cors");
  c.only(kFields.implemented);
  p->allow_origins = c.str("allow_origins").value_or("*");
  p->allow_methods = c.str("allow_methods").value_or("*");
  p->allow_headers = c.str("allow_headers").value_or("*");
  p->expose_headers = c.str("expose_headers").value_or("");
  p->max_age = c.integer("max_age").value_or(5);
  p->allow_credential = c.boolean("allow_credential").value_or(false);
  for (auto [key, list] : {std::pair{"allow_origins_by_regex", &p->origin_regex},
                           std::pair{"timing_allow_origins_by_regex", &p->timing_regex}}) {
    auto l = compile_list(c, key);
    if (!l) {
      if (!c.failed()) c.fail(l.error());
      break;
    }
    *list = std::move(*l);
  }
  p->timing_allow_origins = c.str("timing_allow_origins");
  if (auto m = c.str_array("allow_origins_by_metadata", 1)) p->origins_by_metadata = std::move(*m);
  for (auto [key, v] : {std::pair{"allow_origins", std::optional<std::string>(p->allow_origins)},
                        std::pair{"timing_allow_origins", p->timing_allow_origins}})
    if (v && !valid_origins(*v) && !c.failed())
      c.fail(fmt::format(
          "property \"{}\" validation failed: failed to match pattern \"{}\" with \"{}\"", key,
          "^(\\*|\\*\\*|null|\\w+://[^,]+(,\\w+://[^,]+)*)$", *v));
  if (!c.failed() && p->allow_credential &&
      (p->allow_origins == "*" || p->allow_methods == "*" || p->allow_headers == "*" ||
       p->expose_headers == "*" || p->timing_allow_origins == "*"))
    c.fail("you can not set '*' for other option when 'allow_credential' is true");
  return done(c, p);
}

}  // namespace

extern const PluginDef kCors{"cors", 4000, false, &create, nullptr, &create_metadata, &kFields, &kMetadataFields};

}  // namespace holdfast::plugins
