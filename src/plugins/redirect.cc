// redirect (priority 900): answers with a redirect to a uri template, a
// regex rewrite of the uri, or the https version of the request.
#include <fmt/format.h>

#include "core/log.h"
#include "http/uri.h"
#include "plugins/common.h"

namespace holdfast::plugins {
namespace {

bool name_char(char c) { return isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// The `uri` template as APISIX's redirect parses it (its own pattern, not
// core.utils.resolve_var): `$name` and `${name}` (letters, digits, `_`) are
// variables, "" when unset; `\$name` stays as written, backslash included;
// any other `$` is literal; a backslash that does not start `\$name` is
// dropped (no alternative of APISIX's pattern matches it).
std::string expand_uri_template(std::string_view t, const RequestCtx& ctx) {
  std::string out;
  for (size_t i = 0; i < t.size();) {
    if (t[i] == '\\') {
      size_t e = i + 2;
      if (i + 1 < t.size() && t[i + 1] == '$')
        while (e < t.size() && name_char(t[e])) ++e;
      if (e > i + 2) out.append(t.substr(i, e - i));
      i = e > i + 2 ? e : i + 1;
      continue;
    }
    if (t[i] != '$') {
      out += t[i++];
      continue;
    }
    size_t b = i + 1, e = b;
    bool braced = b < t.size() && t[b] == '{';
    if (braced) ++b, ++e;
    while (e < t.size() && name_char(t[e])) ++e;
    if (e == b || (braced && (e >= t.size() || t[e] != '}'))) {
      out += t[i++];
      continue;
    }
    if (auto v = ctx.var(t.substr(b, e - b))) out += *v;
    i = braced ? e + 1 : e;
  }
  return out;
}

class Redirect final : public Plugin {
 public:
  std::optional<std::string> uri;
  RegexPairs regex_uri;
  bool http_to_https = false, append_query = false, encode_uri = false;
  int ret_code = 302;

  Action rewrite(RequestCtx& ctx) const override {
    std::string target;
    int code = ret_code;
    if (http_to_https) {
      // As APISIX: X-Forwarded-Proto as the request carries it by now, which
      // is $scheme unless a peer in apisix.trusted_addresses sent its own.
      auto proto = ctx.request_header("X-Forwarded-Proto");
      std::string scheme = proto ? *proto : ctx.scheme;
      if (scheme == "https") return Action::next;
      // APISIX: plugin_attr.redirect.https_port, else a TLS listener's port;
      // no port for 443 (or none known).
      target = "https://" + ctx.host;
      if (ctx.https_port && ctx.https_port != 443) target += ":" + std::to_string(ctx.https_port);
      target += ctx.req->target;
      code = (ctx.req->method == "GET" || ctx.req->method == "HEAD") ? 301 : 308;
    } else if (uri) {
      target = expand_uri_template(*uri, ctx);
    } else {
      auto matched = apply_regex_pairs(regex_uri, ctx.uri, target);
      if (!matched) {
        // A regex error (the match limit): APISIX logs it and answers 500
        // with no body.
        log::error("redirect: {}", matched.error());
        ctx.respond(500, "", "");
        return Action::respond;
      }
      if (!*matched) return Action::next;
    }
    // `target` is built from the decoded path ($uri or captures of it).
    // encode_uri re-encodes its path part as APISIX does; either way the
    // Location header gets its control characters percent-encoded when it is
    // set (as OpenResty's ngx.header does), so a %0d%0a in the client's path
    // can never end the header.
    size_t q = target.find('?');
    if (encode_uri) target = http::uri_safe_encode(std::string_view(target).substr(0, q)) +
                             (q == std::string::npos ? std::string() : target.substr(q));
    if (append_query && !ctx.query().empty())
      target += (q == std::string::npos ? "?" : "&") + std::string(ctx.query());
    ctx.respond(code, "", "");
    ctx.add_reply_header("Location", std::move(target));
    return Action::respond;
  }
};

// Every field of APISIX's schema is implemented.
const FieldRules kFields{.implemented = {"uri", "regex_uri", "http_to_https", "ret_code", "encode_uri",
                                         "append_query_string"}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<Redirect>();
  Checker c(conf, "redirect");
  c.only(kFields.implemented);
  p->uri = c.str("uri", false, 2);
  p->http_to_https = c.boolean("http_to_https").value_or(false);
  p->ret_code = static_cast<int>(c.integer("ret_code", false, 200).value_or(302));
  p->encode_uri = c.boolean("encode_uri").value_or(false);
  p->append_query = c.boolean("append_query_string").value_or(false);
  // APISIX: one [regex, template] pair (maxItems 2).
  if (const json::value* r = c.get("regex_uri"); r && r->is_array() && r->as_array().size() > 2)
    c.fail("property \"regex_uri\" validation failed: expect array to have at most 2 items");
  if (!c.failed()) p->regex_uri = parse_regex_pairs(c, "regex_uri");
  // APISIX's oneOf of {uri}, {regex_uri}, {http_to_https} (present, even
  // false), with jsonschema's words.
  if (!c.failed()) {
    std::vector<int> matched;
    for (int i = 0; const char* k : {"uri", "regex_uri", "http_to_https"}) {
      ++i;
      if (c.has(k)) matched.push_back(i);
    }
    if (matched.empty())
      c.fail("value should match only one schema, but matches none");
    else if (matched.size() > 1)
      c.fail(fmt::format("value should match only one schema, but matches both schemas {} and {}",
                         matched[0], matched[1]));
  }
  if (!c.failed() && p->http_to_https && p->append_query) c.fail("only one of `http_to_https` and `append_query_string` can be configured.");
  return done(c, p);
}

}  // namespace

extern const PluginDef kRedirect{"redirect", 900, false, &create, nullptr, nullptr, &kFields};

}  // namespace holdfast::plugins
