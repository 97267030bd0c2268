// cors (priority 4000): answers every OPTIONS request with an empty 200 and
// adds Access-Control-* headers when the request's Origin is allowed.
#include <fmt/format.h>

#include <cctype>
#include <unordered_map>

#include "core/log.h"
#include "plugins/common.h"

namespace holdfast::plugins {
namespace {

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t c = s.find(',', pos);
    std::string item = s.substr(pos, c == std::string::npos ? std::string::npos : c - pos);
    while (!item.empty() && item.front() == ' ') item.erase(0, 1);
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (!item.empty()) out.push_back(item);
    if (c == std::string::npos) break;
    pos = c + 1;
  }
  return out;
}

// plugin_metadata for cors: `allow_origins`, named origin lists that a
// route's `allow_origins_by_metadata` refers to.
struct CorsMetadata final : Metadata {
  struct Origins {
    bool any = false;                // "*" or "**"
    std::vector<std::string> list;   // exact origins
  };
  std::unordered_map<std::string, Origins> allow_origins;
};

// APISIX's origins_pattern: ^(\*|\*\*|null|\w+://[^,]+(,\w+://[^,]+)*)$
bool valid_origins(const std::string& s) {
  if (s == "*" || s == "**" || s == "null") return true;
  size_t pos = 0;
  while (true) {
    size_t end = s.find(',', pos);
    std::string_view item = std::string_view(s).substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    size_t sep = item.find("://");
    if (sep == 0 || sep == std::string_view::npos || sep + 3 >= item.size()) return false;
    for (size_t i = 0; i < sep; ++i)
      if (!std::isalnum(static_cast<unsigned char>(item[i])) && item[i] != '_') return false;
    if (end == std::string::npos) return true;
    pos = end + 1;
  }
}

Result<std::shared_ptr<const Metadata>> create_metadata(const json::object& conf) {
  auto m = std::make_shared<CorsMetadata>();
  Checker c(conf, "cors metadata");
  if (const json::object* map = c.object("allow_origins")) {
    for (const auto& kv : *map) {
      const json::string* v = kv.value().if_string();
      if (!v || !valid_origins(std::string(*v)))
        return Error{fmt::format("property \"allow_origins\" validation failed: failed to validate {} (matching "
                                 "\"^(\\*|\\*\\*|null|\\w+://[^,]+(,\\w+://[^,]+)*)$\")",
                                 std::string(kv.key()))};
      CorsMetadata::Origins o;
      o.any = *v == "*" || *v == "**";
      if (!o.any) o.list = split_commas(std::string(*v));
      m->allow_origins.emplace(std::string(kv.key()), std::move(o));
    }
  }
  if (c.failed()) return Error{c.error()};
  return std::shared_ptr<const Metadata>(std::move(m));
}

class Cors final : public Plugin {
 public:
  std::string allow_origins = "*", allow_methods = "*", allow_headers = "*", expose_headers;
  int64_t max_age = 5;
  bool allow_credential = false;
  std::vector<std::shared_ptr<const UserRegex>> origin_regex;
  std::vector<std::string> timing_allow_origins;
  std::vector<std::string> origins_by_metadata;  // names in the metadata's allow_origins

  // The origin when one of the named metadata lists allows it, else "".
  std::string metadata_allow(const RequestCtx& ctx, const std::string& origin) const {
    if (origins_by_metadata.empty() || origin.empty()) return {};
    const auto* md = MetadataTable::of<CorsMetadata>(ctx, "cors");
    if (!md) return {};
    for (const auto& name : origins_by_metadata) {
      auto it = md->allow_origins.find(name);
      if (it == md->allow_origins.end()) continue;
      if (it->second.any) return origin;
      for (const auto& o : it->second.list)
        if (o == origin) return origin;
    }
    return {};
  }

  Action rewrite(RequestCtx& ctx) const override {
    if (ctx.req->method == "OPTIONS") {
      ctx.respond(200, "", "");
      return Action::respond;
    }
    return Action::next;
  }

  void header_filter(RequestCtx& ctx) const override {
    std::string origin = ctx.request_header("Origin").value_or("");
    // As APISIX, allow_origins_by_metadata is looked at first; when it does
    // not allow the origin, the route's own origins apply only if they are
    // not the default "*".
    std::string allow = metadata_allow(ctx, origin);
    const bool local = allow.empty() && (origins_by_metadata.empty() || allow_origins != "*");
    if (!local) {
    } else if (allow_origins == "*") allow = "*";
    else if (allow_origins == "**") allow = origin.empty() ? "*" : origin;
    else {
      for (const auto& o : split_commas(allow_origins))
        if (o == origin) { allow = origin; break; }
    }
    if (local && allow.empty() && !origin.empty()) {
      // APISIX: ngx.re.find, an unanchored search; a pattern that must
      // match the whole origin says so with ^ and $. A regex error (the
      // match limit) allows nothing.
      for (const auto& re : origin_regex) {
        std::string why;
        RegexMatch m = re->find(origin, 0, nullptr, &why);
        if (m == RegexMatch::error) log::error("cors: allow_origins_by_regex '{}' failed: {}", re->pattern(), why);
        if (m == RegexMatch::match) { allow = origin; break; }
      }
    }
    if (allow.empty()) return;
    ctx.set_response_header("Access-Control-Allow-Origin", allow);
    if (allow != "*") ctx.add_response_header("Vary", "Origin");
    std::string methods = allow_methods;
    if (methods == "**") methods = "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE";
    ctx.set_response_header("Access-Control-Allow-Methods", methods);
    std::string headers = allow_headers;
    if (headers == "**") headers = ctx.request_header("Access-Control-Request-Headers").value_or("");
    if (!headers.empty()) ctx.set_response_header("Access-Control-Allow-Headers", headers);
    ctx.set_response_header("Access-Control-Max-Age", std::to_string(max_age));
    if (!expose_headers.empty()) ctx.set_response_header("Access-Control-Expose-Headers", expose_headers);
    if (allow_credential) ctx.set_response_header("Access-Control-Allow-Credentials", "true");
    for (const auto& t : timing_allow_origins)
      if (t == origin || t == "*") { ctx.set_response_header("Timing-Allow-Origin", origin); break; }
  }
};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<Cors>();
  Checker c(conf, "cors");
  c.only({"allow_origins", "allow_methods", "allow_headers", "expose_headers", "max_age", "allow_credential",
          "allow_origins_by_regex", "allow_origins_by_metadata", "timing_allow_origins",
          "timing_allow_origins_by_regex"});
  p->allow_origins = c.str("allow_origins").value_or("*");
  p->allow_methods = c.str("allow_methods").value_or("*");
  p->allow_headers = c.str("allow_headers").value_or("*");
  p->expose_headers = c.str("expose_headers").value_or("");
  p->max_age = c.integer("max_age").value_or(5);
  p->allow_credential = c.boolean("allow_credential").value_or(false);
  if (auto rs = c.str_array("allow_origins_by_regex", 1)) {
    for (const auto& r : *rs) {
      auto re = UserRegex::compile(r);
      if (!re) { c.fail("invalid allow_origins_by_regex '" + r + "': " + re.error()); break; }
      p->origin_regex.push_back(std::move(*re));
    }
  }
  if (auto t = c.str("timing_allow_origins")) p->timing_allow_origins = split_commas(*t);
  if (auto m = c.str_array("allow_origins_by_metadata", 1)) p->origins_by_metadata = std::move(*m);
  if (!c.failed() && p->allow_credential &&
      (p->allow_origins == "*" || p->allow_methods == "*" || p->allow_headers == "*" || p->expose_headers == "*"))
    c.fail("you can not set '*' for other option when 'allow_credential' is true");
  return done(c, p);
}

}  // namespace

extern const PluginDef kCors{"cors", 4000, false, &create, nullptr, &create_metadata};

}  // namespace holdfast::plugins
