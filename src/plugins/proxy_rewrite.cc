// proxy-rewrite (priority 1008): rewrites the upstream request's uri
// (template or regex), method, Host and headers.
#include <re2/re2.h>  // the fixed `host` check only; user regexes: core/user_regex.h

#include "core/log.h"
#include "http/uri.h"
#include "plugins/common.h"

namespace holdfast::plugins {
namespace {

// A header value: $N / ${N} from regex_uri's captures (APISIX's
// resolve_var_with_captures; a missing group is empty) and $var / ${var}
// from the request (unknown: empty). One pass, so that a capture the client
// controls is never expanded again as a variable (APISIX runs two passes).
std::string expand_captures(std::string_view tmpl, const std::vector<std::string>& caps, const RequestCtx& ctx) {
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  std::string out;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    size_t d = i + 1 + (i + 1 < tmpl.size() && tmpl[i + 1] == '{');
    if (tmpl[i] == '$' && d < tmpl.size() && digit(tmpl[d])) {
      size_t j = d, n = 0;
      while (j < tmpl.size() && digit(tmpl[j])) n = std::min<size_t>(n * 10 + (tmpl[j++] - '0'), 1000);
      if (j < tmpl.size() && tmpl[j] == '}') ++j;
      if (n < caps.size()) out += caps[n];
      i = j - 1;
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

// Variables as a `uri` template takes them in: APISIX escapes '?' in every
// value (its escape_separator), so that a %3F the client sent inside its path
// stays in the path instead of starting a query.
class SeparatorEscaped final : public router::VarSource {
 public:
  explicit SeparatorEscaped(const RequestCtx& ctx) : ctx_(ctx) {}
  std::optional<std::string> var(std::string_view name) const override {
    auto v = ctx_.var(name);
    if (!v || v->find('?') == std::string::npos) return v;
    std::string out;
    for (char c : *v) {
      if (c == '?') out += "%3F";
      else out += c;
    }
    return out;
  }

 private:
  const RequestCtx& ctx_;
};

// The upstream target for a rewritten uri, encoded as APISIX encodes it: the
// uri is built from the decoded path ($uri, captures, path parameters), so
// its path part goes through uri_safe_encode (a CR LF the client sent as
// %0d%0a goes out as %0D%0A again, never raw), a query the template carries
// gets only its control characters encoded (its ?, = and & stay), and the
// client's query string follows.
std::string encode_upstream_target(std::string_view uri, bool separator_escaped, std::string_view client_query) {
  size_t q = separator_escaped ? uri.find('?') : std::string_view::npos;
  std::string out = http::uri_safe_encode(uri.substr(0, q));
  if (q != std::string_view::npos) out += http::escape_uri_control_chars(uri.substr(q));
  if (!client_query.empty()) {
    out += q == std::string_view::npos ? '?' : '&';
    out.append(client_query);
  }
  return out;
}

// $real_request_uri: the request target as the client sent it (path and
// query, not decoded nor normalized).
std::string real_request_uri(const RequestCtx& ctx) {
  if (!ctx.req->target.empty() && ctx.req->target[0] == '/') return std::string(ctx.req->target);
  std::string out(ctx.req->path);
  if (!ctx.req->query.empty()) out.append("?").append(ctx.req->query);
  return out;
}

// use_real_request_uri_unsafe sends what it built unencoded, as APISIX does,
// except for control characters and spaces: those cannot go out in a request
// line at all (the head writer would refuse the request), so they go as %XX.
std::string unsafe_target(std::string_view uri) {
  std::string out;
  for (char c : http::escape_uri_control_chars(uri)) {
    if (c == ' ') out += "%20";
    else out += c;
  }
  return out;
}

// APISIX's check_set_headers for the flat form (a header name or value that
// could not go out as one header line is refused), in its order.
std::optional<std::string> check_flat_headers(const json::value& h) {
  if (!h.is_object()) return std::nullopt;
  const json::object& o = h.as_object();
  for (const char* k : {"add", "set", "remove"})
    if (auto it = o.find(k); it != o.end() && (it->value().is_object() || it->value().is_array())) return std::nullopt;
  for (const auto& kv : o) {
    if (!kv.value().is_string() && !kv.value().is_number()) return "invalid type as header value";
    if (kv.key().empty()) return "invalid field length in header";
    for (unsigned char b : kv.key())
      if (b <= 32 || b >= 127 || b == ':') return "invalid field character in header";
    if (kv.value().is_string())
      for (unsigned char b : kv.value().as_string())
        if (b < 32 || b >= 127) return "invalid value character in header";
  }
  return std::nullopt;
}

class ProxyRewrite final : public Plugin {
 public:
  std::optional<std::string> uri, method, host;
  RegexPairs regex_uri;
  HeaderOps headers;
  bool unsafe = false;  // use_real_request_uri_unsafe

  Action rewrite(RequestCtx& ctx) const override {
    // As APISIX: the upstream uri starts as $uri (decoded, normalized), or
    // the raw request target with use_real_request_uri_unsafe.
    const std::string raw = unsafe ? real_request_uri(ctx) : std::string();
    std::string_view subject = unsafe ? std::string_view(raw) : std::string_view(ctx.uri);
    std::string new_uri(subject);
    std::vector<std::string> captures;
    // Whether a '?' in the new uri starts a query: always for a template
    // (the values it took in had theirs escaped); for regex_uri only when
    // $uri had none (a '?' there was a %3F in the client's path).
    bool separator_escaped = false;
    if (uri) {
      separator_escaped = true;
      new_uri = router::expand_vars(*uri, SeparatorEscaped(ctx));
      if (unsafe) {
        // The client's query, merged with one the template carries.
        if (size_t q = raw.find('?'); q != std::string::npos)
          new_uri.append(new_uri.find('?') == std::string::npos ? "?" : "&").append(std::string_view(raw).substr(q + 1));
      }
    } else if (!regex_uri.empty()) {
      separator_escaped = subject.find('?') == std::string::npos;
      // As APISIX: the first pair whose regex matches rewrites the uri, and
      // its captures are what $N means in header values.
      for (const auto& [re, tmpl] : regex_uri) {
        RegexCaptures found;
        std::string why, out;
        auto m = re->find(subject, 0, &found, &why);
        Result<size_t> n = size_t{0};
        if (m == RegexMatch::match) n = regex_substitute(*re, subject, tmpl, false, out);
        if (m == RegexMatch::error || !n) {
          // A regex error (the match limit) answers 500, as APISIX does.
          std::string msg = fmt::format("failed to match the uri {} ({}) : {}", ctx.uri, re->pattern(),
                                        m == RegexMatch::error ? why : n.error());
          log::error("proxy-rewrite: {}", msg);
          ctx.respond(500, json_error_msg(msg));
          return Action::respond;
        }
        if (m == RegexMatch::match) {
          for (auto c : found) captures.emplace_back(c.data() ? std::string(c) : std::string());
          new_uri = std::move(out);
          break;
        }
      }
    }
    // APISIX sets the upstream uri whenever proxy-rewrite runs: without
    // `uri` or a matching `regex_uri` too, so /a%5Fb reaches the upstream as
    // /a_b (and, unsafe, exactly as the client sent it). The query is
    // ngx.var.args: what earlier plugins left of it (key-auth's
    // hide_credentials).
    if (unsafe) ctx.set_upstream_target(unsafe_target(new_uri));
    else ctx.set_upstream_target(encode_upstream_target(new_uri, separator_escaped, ctx.query()));
    if (method) ctx.set_upstream_method(*method);
    if (host) ctx.set_upstream_host(*host);
    // APISIX's order: add, then set (so set wins over add on one header),
    // then remove. An array value is consecutive entries of one name: set
    // replaces the header with the first and adds the rest.
    for (const auto& [k, v] : headers.add) ctx.add_request_header(k, expand_captures(v, captures, ctx));
    for (size_t i = 0; i < headers.set.size(); ++i) {
      const auto& [k, v] = headers.set[i];
      std::string val = expand_captures(v, captures, ctx);
      if (i > 0 && headers.set[i - 1].first == k) ctx.add_request_header(k, std::move(val));
      else ctx.set_request_header(k, std::move(val));
    }
    for (const auto& k : headers.remove) ctx.remove_request_header(k);
    return Action::next;
  }
};

// Every field of APISIX's schema is implemented.
const FieldRules kFields{.implemented = {"uri", "regex_uri", "method", "host", "headers",
                                         "use_real_request_uri_unsafe"}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<ProxyRewrite>();
  Checker c(conf, "proxy-rewrite");
  c.only(kFields.implemented);
  p->uri = c.str("uri", false, 1, 4096);
  if (p->uri && (*p->uri)[0] != '/' && (*p->uri)[0] != '$')
    c.fail("property \"uri\" validation failed: failed to match pattern \"^\\\\/.*\" with \"" + *p->uri + "\"");
  p->regex_uri = parse_regex_pairs(c, "regex_uri");
  p->method = c.one_of("method", {"GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "MKCOL", "COPY", "MOVE",
                                  "PROPFIND", "LOCK", "UNLOCK", "PATCH", "TRACE"}, nullptr);
  p->host = c.str("host");
  // APISIX's pattern: the value goes out as the upstream Host header.
  static const re2::RE2 kHost(R"(^[0-9a-zA-Z-.]+(:\d{1,5})?$)");
  if (p->host && !re2::RE2::FullMatch(*p->host, kHost))
    c.fail("property \"host\" validation failed: failed to match pattern \"^[0-9a-zA-Z-.]+(:\\d{1,5})?$\" with \"" + *p->host + "\"");
  p->unsafe = c.boolean("use_real_request_uri_unsafe").value_or(false);
  if (const json::value* h = c.get("headers"); h && !c.failed()) {
    if (auto err = check_flat_headers(*h)) c.fail(*err);
    auto ops = parse_header_ops(*h, true);
    if (!ops) c.fail(ops.error());
    else p->headers = *ops;
  }
  return done(c, p);
}

}  // namespace

extern const PluginDef kProxyRewrite{"proxy-rewrite", 1008, false, &create, nullptr, nullptr, &kFields};

}  // namespace holdfast::plugins
