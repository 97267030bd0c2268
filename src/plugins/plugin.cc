#include "plugins/plugin.h"

#include <fmt/format.h>

#include <boost/json.hpp>

#include "http/head_writer.h"
#include "plugins/common.h"
#include "model/resources.h"

namespace holdfast::plugins {
namespace json = boost::json;

namespace {
std::string header_var_name(std::string_view header) {
  std::string out(header);
  for (auto& c : out) c = c == '-' ? '_' : static_cast<char>(tolower(static_cast<unsigned char>(c)));
  return out;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// As ngx.req.get_uri_args / get_post_args decode: %XX and '+' as a space;
// a malformed escape stays as it is.
std::string form_unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && hex_digit(s[i + 1]) >= 0 &&
               hex_digit(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Calls f(key, value) with each decoded pair of a query string or an
// x-www-form-urlencoded body until it returns true. A key without '='
// has an empty value.
template <typename F>
void for_each_form_pair(std::string_view s, F&& f) {
  while (!s.empty()) {
    size_t amp = s.find('&');
    std::string_view pair = s.substr(0, amp);
    if (!pair.empty()) {
      size_t eq = pair.find('=');
      std::string_view v = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
      if (f(form_unescape(pair.substr(0, eq)), v)) return;
    }
    if (amp == std::string_view::npos) break;
    s.remove_prefix(amp + 1);
  }
}

// APISIX's $arg_NAME and $post_arg_NAME read ngx.req.get_uri_args /
// get_post_args: decoded, the first value of a repeated key.
std::optional<std::string> form_arg(std::string_view s, std::string_view name) {
  std::optional<std::string> out;
  for_each_form_pair(s, [&](const std::string& k, std::string_view v) {
    if (k != name) return false;
    out = form_unescape(v);
    return true;
  });
  return out;
}

// A value from the body table as a variable: strings as they are, numbers
// and booleans as Lua prints them, arrays of those joined with ',' (what
// the `has` operator reads); objects and null are unset.
std::optional<std::string> table_scalar(const boost::json::value& v) {
  if (v.is_string()) return std::string(v.as_string());
  if (v.is_bool()) return v.as_bool() ? "true" : "false";
  if (v.is_int64()) return std::to_string(v.as_int64());
  if (v.is_uint64()) return std::to_string(v.as_uint64());
  if (v.is_double()) {
    double d = v.as_double();
    if (d == static_cast<double>(static_cast<int64_t>(d)) && d > -1e15 && d < 1e15)
      return std::to_string(static_cast<int64_t>(d));
    return fmt::format("{:.14g}", d);
  }
  if (v.is_array()) {
    std::string out;
    for (const auto& e : v.as_array()) {
      auto s = table_scalar(e);
      if (!s || e.is_array()) return std::nullopt;
      if (!out.empty()) out += ',';
      out += *s;
    }
    return out;
  }
  return std::nullopt;
}

std::optional<std::string> cookie(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    size_t semi = header.find(';');
    std::string_view item = header.substr(0, semi);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    size_t eq = item.find('=');
    if (eq != std::string_view::npos && item.substr(0, eq) == name) return std::string(item.substr(eq + 1));
    if (semi == std::string_view::npos) break;
    header.remove_prefix(semi + 1);
  }
  return std::nullopt;
}
}  // namespace

boost::json::object query_table(std::string_view query) {
  boost::json::object out;
  for_each_form_pair(query, [&](const std::string& k, std::string_view v) {
    // ngx.req.get_uri_args: a key without '=' is true, a repeated key a list.
    const bool bare = v.data() == nullptr;
    boost::json::value val = bare ? boost::json::value(true) : boost::json::value(form_unescape(v));
    auto it = out.find(k);
    if (it == out.end()) {
      out[k] = std::move(val);
    } else if (it->value().is_array()) {
      it->value().as_array().push_back(std::move(val));
    } else {
      boost::json::array a{it->value(), std::move(val)};
      it->value() = std::move(a);
    }
    return false;
  });
  return out;
}

namespace {
// 'p', 'h', 'P' for X-Forwarded-Proto/Host/Port, 'f' for Forwarded, 0 otherwise.
char forwarded_kind(std::string_view lower_or_header) {
  auto is = [&](std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      char c = static_cast<char>(tolower(static_cast<unsigned char>(a[i])));
      if ((c == '-' ? '_' : c) != b[i]) return false;
    }
    return true;
  };
  std::string_view n = lower_or_header;
  if (n.size() == 9 && is(n, "forwarded")) return 'f';
  if (n.size() < 15 || n.size() > 17) return 0;
  if (is(n, "x_forwarded_for")) return 'x';
  if (is(n, "x_forwarded_proto")) return 'p';
  if (is(n, "x_forwarded_host")) return 'h';
  if (is(n, "x_forwarded_port")) return 'P';
  return 0;
}
}  // namespace

std::string_view RequestCtx::forwarded(char which, std::string& scratch) const {
  const std::string_view host_header = req ? req->host : std::string_view();
  if (forwarded_trusted && req) {
    const char* name = which == 'p' ? "x-forwarded-proto" : which == 'h' ? "x-forwarded-host" : "x-forwarded-port";
    if (auto v = req->header(name); !v.empty()) return v;
  }
  if (which == 'p') return scheme;
  // APISIX's ngx_tpl: $http_host as sent (port and case kept), else $host;
  // the Host's port, else the listener's.
  if (which == 'h') return host_header.empty() ? std::string_view(host) : host_header;
  if (auto p = http::host_header_port(host_header); !p.empty()) return p;
  scratch = std::to_string(server_port);
  return scratch;
}

std::optional<std::string> RequestCtx::request_header(std::string_view name) const {
  for (const auto& r : req_remove)
    if (http::iequals(r, name)) {
      // Removed, then perhaps added again.
      for (const auto& e : req_add)
        if (http::iequals(e.name, name)) return e.value;
      return std::nullopt;
    }
  for (const auto& e : req_set)
    if (http::iequals(e.name, name)) return e.value;
  if (char k = forwarded_kind(name)) {
    if (k == 'x') {
      if (xff_dropped) return std::nullopt;
    } else if (k != 'f') {
      std::string t;
      return std::string(forwarded(k, t));
    } else if (!forwarded_trusted) {
      return std::nullopt;
    }
  }
  if (req) {
    for (const auto& h : req->headers)
      if (http::iequals(h.name, name)) return std::string(h.value);
  }
  for (const auto& e : req_add)
    if (http::iequals(e.name, name)) return e.value;
  return std::nullopt;
}

// APISIX's core.request.get_request_body_table: the body as a table by its
// Content-Type (JSON, or a form whose repeated keys become arrays).
// multipart/form-data is not read here (unset, as any other type).
const boost::json::value* RequestCtx::post_body_table() const {
  if (body_table_tried) return body_table ? &*body_table : nullptr;
  body_table_tried = true;
  if (!body || !req) return nullptr;
  std::string_view ct = req->header("content-type");
  if (ct.find("application/json") != std::string_view::npos) {
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(*body, ec);
    if (!ec) body_table = std::move(v);
  } else if (ct.find("application/x-www-form-urlencoded") != std::string_view::npos) {
    boost::json::object o;
    for_each_form_pair(*body, [&](const std::string& k, std::string_view v) {
      boost::json::string val(form_unescape(v));
      if (auto* cur = o.if_contains(k)) {
        if (!cur->is_array()) *cur = boost::json::array{std::move(*cur)};
        cur->as_array().emplace_back(std::move(val));
      } else {
        o.emplace(k, std::move(val));
      }
      return false;
    });
    body_table = boost::json::value(std::move(o));
  }
  return body_table ? &*body_table : nullptr;
}

// APISIX ctx.lua parse_graphql: the document is the `query` argument of a
// GET, or the body of a POST (its "query" field when the Content-Type is
// exactly application/json). Anything else, or a document that does not
// parse, leaves every graphql_* variable unset.
const http::GraphqlSummary* RequestCtx::graphql_summary() const {
  if (!graphql) {
    graphql.emplace();
    std::optional<std::string> doc;
    if (req && req->method == "GET") {
      doc = form_arg(query(), "query");
    } else if (req && req->method == "POST" && body && !body->empty() && body->size() <= graphql_max_size) {
      if (req->header("content-type") == "application/json") {
        const boost::json::value* t = post_body_table();
        const boost::json::object* o = t ? t->if_object() : nullptr;
        const boost::json::value* q = o ? o->if_contains("query") : nullptr;
        if (q && q->is_string()) doc = std::string(q->as_string());
      } else {
        doc = std::string(*body);
      }
    }
    if (doc) *graphql = http::parse_graphql(*doc);
  }
  return *graphql ? &**graphql : nullptr;
}

std::optional<std::string> RequestCtx::var(std::string_view name) const {
  if (name.starts_with("http_")) {
    std::string_view want = name.substr(5);
    for (const auto& e : req_set)
      if (header_var_name(e.name) == want) return e.value;
    for (const auto& r : req_remove)
      if (header_var_name(r) == want) {
        for (const auto& e : req_add)
          if (header_var_name(e.name) == want) return e.value;
        return std::nullopt;
      }
    if (char k = forwarded_kind(want)) {
      if (k == 'x') {
        if (xff_dropped) return std::nullopt;
      } else if (k != 'f') {
        std::string t;
        return std::string(forwarded(k, t));
      } else if (!forwarded_trusted) {
        return std::nullopt;
      }
    }
    if (req) {
      for (const auto& h : req->headers)
        if (h.name.size() == want.size() && header_var_name(h.name) == want) return std::string(h.value);
    }
    return std::nullopt;
  }
  // APISIX keeps what the client sent in these, before any was replaced.
  if (name.starts_with("original_") && req) {
    std::string_view h = name.substr(9);
    for (const char* n : {"x_forwarded_for", "x_forwarded_proto", "x_forwarded_host", "x_forwarded_port", "forwarded"})
      if (h == n) {
        for (const auto& hd : req->headers)
          if (header_var_name(hd.name) == h) return std::string(hd.value);
        return std::nullopt;
      }
  }
  if (name.starts_with("arg_")) return req ? form_arg(query(), name.substr(4)) : std::nullopt;
  if (name.starts_with("post_arg_")) {
    // Only a form body, as APISIX's ctx.lua.
    if (!body || !req || !req->header("content-type").starts_with("application/x-www-form-urlencoded"))
      return std::nullopt;
    return form_arg(*body, name.substr(9));
  }
  if (name.starts_with("graphql_")) {
    const http::GraphqlSummary* g = graphql_summary();
    if (!g) return std::nullopt;
    if (name == "graphql_operation") return g->operation.empty() ? std::nullopt : std::optional(g->operation);
    if (name == "graphql_name") return g->name;
    if (name == "graphql_root_fields") {
      // A table in APISIX; joined with ',' here, which is what `has` reads.
      std::string out;
      for (const auto& f : g->root_fields) out += (out.empty() ? "" : ",") + f;
      return out;
    }
    return std::nullopt;
  }
  if (name.starts_with("post_arg.")) {
    const boost::json::value* cur = post_body_table();
    std::string_view path = name.substr(9);
    while (cur) {
      size_t dot = path.find('.');
      std::string_view part = path.substr(0, dot);
      const auto* o = cur->if_object();
      cur = o ? o->if_contains(part) : nullptr;
      if (dot == std::string_view::npos) break;
      path.remove_prefix(dot + 1);
    }
    return cur ? table_scalar(*cur) : std::nullopt;
  }
  if (name.starts_with("cookie_")) {
    if (!req) return std::nullopt;
    for (const auto& h : req->headers)
      if (http::iequals(h.name, "cookie"))
        if (auto c = cookie(h.value, name.substr(7))) return c;
    return std::nullopt;
  }
  if (name == "uri") return uri;
  if (name == "host") return host;
  if (name == "remote_addr") return remote_addr;
  if (name == "remote_port") return std::to_string(remote_port);
  if (name == "realip_remote_addr") return std::string(realip_remote_addr.empty() ? std::string_view(remote_addr) : realip_remote_addr);
  if (name == "realip_remote_port") return std::to_string(remote_port);
  if (name == "server_port") return std::to_string(server_port);
  if (name == "scheme") return scheme;
  if (name.starts_with("ssl_")) {
    if (!tls) return std::nullopt;
    if (name == "ssl_server_name") return tls->server_name;
    if (name == "ssl_client_verify") return tls->client_verify;
    if (name == "ssl_client_s_dn") return tls->client_s_dn;
    if (name == "ssl_client_serial") return tls->client_serial;
  }
  if (!req) return std::nullopt;
  if (name == "request_method") return std::string(req->method);
  if (name == "server_protocol") return std::string(http2 ? "HTTP/2.0" : req->minor == 0 ? "HTTP/1.0" : "HTTP/1.1");
  if (name == "request_uri") return std::string(req->target);
  if (name == "query_string" || name == "args") {
    if (query().empty()) return std::nullopt;
    return std::string(query());
  }
  if (name == "is_args") return query().empty() ? std::string() : std::string("?");
  if (name == "server_name" || name == "hostname") return host;
  if (name == "route_id" && !route_id.empty()) return std::string(route_id);
  if (name == "consumer_name" && consumer) return consumer->conf->username;
  if (name == "request_id") return request_id;
  if (name == "status" && upstream_status) return std::to_string(resp_status_override.value_or(upstream_status));
  if (name == "upstream_status" && upstream_status) return std::to_string(upstream_status);
  if (name.starts_with("uri_param_")) {
    // APISIX 3.x: a path parameter of radixtree_uri_with_parameter.
    for (const auto& [k, v] : params)
      if (k == name.substr(10)) return v;
    return std::nullopt;
  }
  if (!balancer_ip.empty()) {
    if (name == "balancer_ip") return balancer_ip;
    if (name == "balancer_port") return std::to_string(balancer_port);
    if (name == "upstream_addr") {
      if (balancer_ip.find(':') != std::string::npos) return fmt::format("[{}]:{}", balancer_ip, balancer_port);
      return fmt::format("{}:{}", balancer_ip, balancer_port);
    }
  }
  if (name.starts_with("upstream_http_")) {
    if (!upstream_resp) return std::nullopt;
    std::string_view want = name.substr(14);
    for (const auto& h : upstream_resp->headers)
      if (h.name.size() == want.size() && header_var_name(h.name) == want) return std::string(h.value);
    return std::nullopt;
  }
  if (name.starts_with(":") || name.size() > 0) {
    for (const auto& [k, v] : params)
      if (k == name) return v;
  }
  return std::nullopt;
}

namespace {
HeaderEdit escaped(std::string name, std::string value, const char* plugin) {
  return {http::escape_header_name(std::move(name)), http::escape_header_value(std::move(value)), plugin};
}
void set_in(HeaderEdits& list, HeaderEdit e) {
  for (auto& have : list)
    if (http::iequals(have.name, e.name)) { have = std::move(e); return; }
  list.push_back(std::move(e));
}
}  // namespace

void RequestCtx::set_upstream_target(std::string target) {
  upstream_target = std::move(target);
  upstream_target_by = plugin;
}
void RequestCtx::set_query(std::string q) {
  std::string target = upstream_target ? upstream_target->substr(0, upstream_target->find('?'))
                                       : std::string(req ? req->path : std::string_view("/"));
  if (!q.empty()) target.append("?").append(q);
  args = std::move(q);
  set_upstream_target(std::move(target));
}
void RequestCtx::set_upstream_method(std::string method) {
  upstream_method = std::move(method);
  upstream_method_by = plugin;
}
void RequestCtx::set_upstream_host(std::string host) {
  upstream_host = std::move(host);
  upstream_host_by = plugin;
}
void RequestCtx::set_request_header(std::string name, std::string value) {
  HeaderEdit e = escaped(std::move(name), std::move(value), plugin);
  std::erase_if(req_add, [&](const HeaderEdit& a) { return http::iequals(a.name, e.name); });
  if (e.value.empty()) {
    remove_request_header(std::move(e.name));
    return;
  }
  std::erase_if(req_remove, [&](const std::string& r) { return http::iequals(r, e.name); });
  set_in(req_set, std::move(e));
}
void RequestCtx::remove_request_header(std::string name) {
  name = http::escape_header_name(std::move(name));
  auto same = [&](const HeaderEdit& a) { return http::iequals(a.name, name); };
  std::erase_if(req_set, same);
  std::erase_if(req_add, same);
  req_remove.push_back(std::move(name));
}
void RequestCtx::add_request_header(std::string name, std::string value) {
  req_add.push_back(escaped(std::move(name), std::move(value), plugin));
}
void RequestCtx::set_response_header(std::string name, std::string value) {
  HeaderEdit e = escaped(std::move(name), std::move(value), plugin);
  std::erase_if(resp_add, [&](const HeaderEdit& a) { return http::iequals(a.name, e.name); });
  set_in(resp_set, std::move(e));
}
void RequestCtx::remove_response_header(std::string name) {
  name = http::escape_header_name(std::move(name));
  auto same = [&](const HeaderEdit& a) { return http::iequals(a.name, name); };
  std::erase_if(resp_set, same);
  std::erase_if(resp_add, same);
  resp_remove.push_back(std::move(name));
}
void RequestCtx::add_response_header(std::string name, std::string value) {
  resp_add.push_back(escaped(std::move(name), std::move(value), plugin));
}
void RequestCtx::add_reply_header(std::string name, std::string value) {
  resp_headers.push_back(escaped(std::move(name), std::move(value), plugin));
}

void RequestCtx::respond(int status, std::string body, std::string content_type) {
  resp_status = status;
  resp_body = std::move(body);
  if (!content_type.empty()) add_reply_header("Content-Type", std::move(content_type));
}

// --- registry ---------------------------------------------------------------

extern const PluginDef kRequestId;
extern const PluginDef kFaultInjection;
extern const PluginDef kMocking;
extern const PluginDef kCors;
extern const PluginDef kIpRestriction;
extern const PluginDef kKeyAuth;
extern const PluginDef kProxyRewrite;
extern const PluginDef kLimitCount;
extern const PluginDef kRedirect;
extern const PluginDef kResponseRewrite;
extern const PluginDef kPrometheus;
extern const PluginDef kLimitReq;
extern const PluginDef kLimitConn;
extern const PluginDef kUriBlocker;
extern const PluginDef kRealIp;
extern const PluginDef kBasicAuth;
extern const PluginDef kJwtAuth;
extern const PluginDef kHmacAuth;
extern const PluginDef kConsumerRestriction;
extern const PluginDef kHttpLogger;
extern const PluginDef kFileLogger;
extern const PluginDef kForwardAuth;
extern const PluginDef kProxyMirror;
extern const PluginDef kTrafficSplit;
extern const PluginDef kApiBreaker;

const std::vector<const PluginDef*>& all_plugins() {
  static const std::vector<const PluginDef*> defs = {
      &kRequestId, &kFaultInjection, &kMocking, &kCors, &kIpRestriction, &kKeyAuth,
      &kProxyRewrite, &kLimitCount, &kRedirect, &kResponseRewrite,
      &kPrometheus, &kLimitReq, &kLimitConn, &kUriBlocker, &kRealIp, &kBasicAuth, &kJwtAuth, &kHmacAuth,
      &kConsumerRestriction, &kHttpLogger, &kFileLogger, &kForwardAuth, &kProxyMirror, &kTrafficSplit, &kApiBreaker};
  return defs;
}

const PluginDef* find_plugin(std::string_view name) {
  for (const PluginDef* d : all_plugins())
    if (name == d->name) return d;
  return nullptr;
}

Result<std::pair<const PluginDef*, std::shared_ptr<const Metadata>>> compile_metadata(
    const json::object& value, const std::vector<std::string>& enabled, std::vector<std::string>* warnings) {
  const json::value* id = value.if_contains("id");
  const std::string name = id && id->is_string() ? std::string(id->as_string()) : std::string();
  const PluginDef* def = find_plugin(name);
  if (!def || (!enabled.empty() && std::find(enabled.begin(), enabled.end(), name) == enabled.end()))
    return Error{"invalid plugin name"};
  json::object conf = value;
  conf.erase("id");
  // A plugin that reads no metadata: APISIX accepts any object and ignores
  // it. One that reads metadata without declaring its fields: its parser
  // alone decides.
  static const FieldRules kNone;
  const FieldRules* rules = def->metadata ? def->metadata_fields : &kNone;
  std::vector<std::string> ignored;
  Result<json::object> screened = conf;
  if (rules) screened = screen_fields(conf, *rules, ignored);
  if (!screened) return Error{"invalid configuration: " + screened.error()};
  std::shared_ptr<const Metadata> compiled;
  if (def->metadata) {
    auto m = def->metadata(*screened);
    if (!m) return Error{"invalid configuration: " + m.error()};
    compiled = *m;
  }
  if (warnings)
    for (const auto& w : ignored) warnings->push_back(fmt::format("plugin_metadata/{}: {}", name, w));
  return std::make_pair(def, compiled);
}

namespace {
// APISIX's plugin_injected_schema: `_meta` allows no other key, and its
// `pre_function` (Lua run before each phase) cannot be run here.
const FieldRules kMetaFields{.implemented = {"disable", "error_response", "priority", "filter"},
                             .refused = {"pre_function"},
                             .closed = true};
}  // namespace

Result<Chain> compile_chain(const json::object& plugins, const std::vector<std::string>& enabled,
                            const std::string& scope, std::vector<std::string>* warnings) {
  Chain chain;
  // Named only when the whole chain compiles: a refused one has its error.
  std::vector<std::string> named;
  for (const auto& kv : plugins) {
    std::string name(kv.key());
    const PluginDef* def = find_plugin(name);
    bool is_enabled = enabled.empty() ||
                      std::find(enabled.begin(), enabled.end(), name) != enabled.end();
    if (!def || !is_enabled) return Error{fmt::format("unknown plugin [{}]", name)};
    if (!kv.value().is_object()) {
      return Error{fmt::format("failed to check the configuration of plugin {} err: expected object", name)};
    }
    json::object conf = kv.value().as_object();
    Entry e{def, nullptr, def->priority, nullptr, {}, false};
    if (auto it = conf.find("_meta"); it != conf.end()) {
      if (!it->value().is_object())
        return Error{fmt::format("failed to check the configuration of plugin {} err: _meta must be an object", name)};
      const json::object& meta = it->value().as_object();
      std::vector<std::string> none;  // a closed schema: nothing is ignored
      if (auto m = screen_fields(meta, kMetaFields, none); !m)
        return Error{fmt::format("failed to check the configuration of plugin {} err: property \"_meta\" validation "
                                 "failed: {}", name, m.error())};
      if (auto d = meta.find("disable"); d != meta.end() && d->value().is_bool() && d->value().as_bool()) {
        conf.erase("_meta");
        continue;  // disabled plugins are skipped, as in APISIX
      }
      if (auto p = meta.find("priority"); p != meta.end()) {
        if (!p->value().is_int64())
          return Error{fmt::format("failed to check the configuration of plugin {} err: _meta.priority must be an integer", name)};
        e.priority = static_cast<int>(p->value().as_int64());
      }
      if (auto f = meta.find("filter"); f != meta.end()) {
        auto ex = router::Expr::compile(f->value());
        if (!ex) return Error{fmt::format("failed to check the configuration of plugin {} err: {}", name, ex.error())};
        e.filter = *ex;
      }
      if (auto er = meta.find("error_response"); er != meta.end()) {
        e.has_error_response = true;
        e.error_response = er->value().is_string() ? std::string(er->value().as_string())
                                                   : json::serialize(er->value());
      }
      conf.erase("_meta");
    }
    if (def->fields) {
      std::vector<std::string> ignored;
      auto screened = screen_fields(conf, *def->fields, ignored);
      if (!screened)
        return Error{fmt::format("failed to check the configuration of plugin {} err: {}", name, screened.error())};
      conf = std::move(*screened);
      for (const auto& w : ignored) named.push_back(fmt::format("{}: plugin {}: {}", scope, name, w));
    }
    auto inst = def->create(conf, scope);
    if (!inst) return Error{fmt::format("failed to check the configuration of plugin {} err: {}", name, inst.error())};
    e.plugin = *inst;
    chain.entries.push_back(std::move(e));
  }
  std::stable_sort(chain.entries.begin(), chain.entries.end(),
                   [](const Entry& a, const Entry& b) { return a.priority > b.priority; });
  if (warnings) warnings->insert(warnings->end(), named.begin(), named.end());
  return chain;
}

Status check_consumer_conf(const PluginDef& def, const json::object& conf, const std::string& scope,
                           std::vector<std::string>* warnings) {
  if (def.consumer_fields) {
    std::vector<std::string> ignored;
    auto screened = screen_fields(conf, *def.consumer_fields, ignored);
    if (!screened) return Error{screened.error()};
    if (warnings)
      for (const auto& w : ignored) warnings->push_back(fmt::format("{}: plugin {}: {}", scope, def.name, w));
  }
  if (def.check_consumer) return def.check_consumer(conf);
  return {};
}

}  // namespace holdfast::plugins
