// forward-auth (priority 2002, access phase): asks an external auth service
// whether the request may pass (APISIX 3.x). The plugin describes the request
// (Action::call, plugins/side_request.h); the pipeline sends it without
// blocking the worker and hands the answer to resume(): a 2xx lets the request
// through with `upstream_headers` copied from the answer, anything else is
// sent back to the client with the service's status, body and
// `client_headers`. No answer (timeout, refused, garbage, a body above
// kMaxAuthBody) is `status_on_error`, or a pass with `allow_degradation`.
#include <fmt/format.h>

#include <boost/json.hpp>

#include "core/log.h"
#include "http/client.h"
#include "http/codec.h"
#include "plugins/common.h"
#include "plugins/side_request.h"
#include "tls/client_context.h"

namespace holdfast::plugins {
namespace {

// The auth service's response body is read whole into memory: a longer one
// is treated as no answer (APISIX reads it unbounded).
constexpr size_t kMaxAuthBody = 1 << 20;

class ForwardAuth final : public Plugin {
 public:
  http::Url url;
  std::string target;  // path?query of `uri`
  bool allow_degradation = false;
  int status_on_error = 403;
  std::string method = "GET";
  uint64_t max_req_body_size = 67108864;
  std::vector<std::string> request_headers, upstream_headers, client_headers;
  std::vector<std::pair<std::string, std::string>> extra_headers;
  double timeout = 3;
  bool keepalive = true;
  double keepalive_timeout = 60;
  int keepalive_pool = 5;
  std::shared_ptr<tls::ClientContext> tls;

  Action access(RequestCtx& ctx) const override {
    auto r = std::make_shared<SideRequest>();
    r->scheme = url.scheme;
    r->host = url.host;
    r->port = url.port;
    r->method = method;
    r->target = target;
    r->timeout = timeout;
    r->max_response_body = kMaxAuthBody;
    r->keepalive = keepalive;
    r->keepalive_timeout = keepalive_timeout;
    r->keepalive_pool = keepalive_pool;
    r->tls = tls;
    // As APISIX builds its header table: the X-Forwarded-* of this request
    // (never the client's), then extra_headers (which may override them),
    // then the client's request_headers not already set.
    HeaderList& h = r->headers;
    auto set = [&](std::string name, std::string value) {
      for (auto& [n, v] : h)
        if (n == name) {
          v = std::move(value);
          return;
        }
      h.emplace_back(std::move(name), std::move(value));
    };
    auto has = [&](std::string_view name) {
      for (const auto& [n, v] : h)
        if (n == name) return true;
      return false;
    };
    set("X-Forwarded-Proto", ctx.scheme);
    set("X-Forwarded-Method", ctx.req ? std::string(ctx.req->method) : std::string());
    set("X-Forwarded-Host", ctx.host);
    set("X-Forwarded-Uri", ctx.req ? std::string(ctx.req->target) : std::string());
    set("X-Forwarded-For", ctx.remote_addr);
    if (method == "POST")
      if (auto ce = ctx.request_header("content-encoding")) set("Content-Encoding", *ce);
    for (const auto& [name, tmpl] : extra_headers) set(name, router::resolve_var(tmpl, ctx));
    for (const auto& name : request_headers)
      if (!has(name))
        if (auto v = ctx.request_header(name)) set(name, *v);
    if (method == "POST") {
      r->with_client_body = true;
      r->client_body_max = max_req_body_size;
    }
    ctx.side = std::move(r);
    return Action::call;
  }

  Action resume(RequestCtx& ctx, const SideResponse& res) const override {
    if (res.status == 0) {
      // A request Holdfast refused to send (a variable of extra_headers
      // carried a CR or LF: $arg_x with %0d) was the client's doing, not the
      // service's failure: never a reason to let the request through.
      if (allow_degradation && !res.refused) return Action::next;
      log::warn("failed to process forward auth, err: {} (route {})", log::json_escape(res.error),
                ctx.route_id.empty() ? std::string_view("-") : ctx.route_id);
      ctx.respond(status_on_error, "", "");
      return Action::respond;
    }
    if (res.status >= 300) {
      bool typed = false;
      for (const auto& name : client_headers)
        if (const std::string* v = res.header(name)) {
          ctx.add_reply_header(name, *v);
          typed = typed || http::iequals(name, "content-type");
        }
      // Otherwise nginx's default_type, as APISIX sends the body.
      ctx.respond(res.status, res.body, typed || res.body.empty() ? "" : "text/plain");
      return Action::respond;
    }
    // Each configured header takes the service's value; one the service did
    // not send is removed from the request (a client cannot supply it).
    for (const auto& name : upstream_headers) {
      if (const std::string* v = res.header(name)) ctx.set_request_header(name, *v);
      else ctx.remove_request_header(name);
    }
    return Action::next;
  }
};

const FieldRules kFields{.implemented = {"uri", "allow_degradation", "status_on_error", "ssl_verify", "request_method",
                                         "max_req_body_size", "request_headers", "extra_headers", "upstream_headers",
                                         "client_headers", "timeout", "keepalive", "keepalive_timeout",
                                         "keepalive_pool"}};

std::vector<std::string> header_names(Checker& c, const char* key) {
  auto v = c.str_array(key);
  return v ? *v : std::vector<std::string>{};
}

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string& scope) {
  auto p = std::make_shared<ForwardAuth>();
  Checker c(conf, "forward-auth");
  auto uri = c.str("uri", true);
  p->allow_degradation = c.boolean("allow_degradation").value_or(false);
  p->status_on_error = static_cast<int>(c.integer("status_on_error", false, 200, 599).value_or(403));
  const bool ssl_verify = c.boolean("ssl_verify").value_or(true);
  if (!c.failed()) p->method = c.one_of("request_method", {"GET", "POST"}, "GET").value_or("GET");
  p->max_req_body_size = static_cast<uint64_t>(c.integer("max_req_body_size", false, 1).value_or(67108864));
  p->request_headers = header_names(c, "request_headers");
  p->upstream_headers = header_names(c, "upstream_headers");
  p->client_headers = header_names(c, "client_headers");
  if (const json::object* extra = c.object("extra_headers"); extra && !c.failed()) {
    if (extra->empty()) c.fail("property \"extra_headers\" validation failed: expect object to have at least 1 properties");
    for (const auto& [k, v] : *extra) {
      if (c.failed()) break;
      if (k.empty() || std::string_view(k).find(':') != std::string_view::npos) {
        c.fail(fmt::format("property \"extra_headers\" validation failed: additional properties forbidden, found {}",
                           shown_name(k)));
      } else if (v.is_string()) {
        p->extra_headers.emplace_back(std::string(k), std::string(v.as_string()));
      } else if (v.is_number()) {
        // APISIX turns a number into its Lua text before resolving it.
        p->extra_headers.emplace_back(std::string(k), lua_number(v));
      } else {
        c.fail(fmt::format("property \"extra_headers\" validation failed: property \"{}\" validation failed: wrong "
                           "type: expected string, got {}",
                           shown_name(k), model::type_name(v)));
      }
    }
  }
  p->timeout = static_cast<double>(c.integer("timeout", false, 1, 60000).value_or(3000)) / 1000.0;
  p->keepalive = c.boolean("keepalive").value_or(true);
  p->keepalive_timeout = static_cast<double>(c.integer("keepalive_timeout", false, 1000).value_or(60000)) / 1000.0;
  p->keepalive_pool = static_cast<int>(c.integer("keepalive_pool", false, 1).value_or(5));
  if (!c.failed() && uri) {
    auto u = http::Url::parse(*uri);
    if (!u || u->host.empty()) {
      c.fail(fmt::format("property \"uri\" validation failed: {}", u ? "missing host" : u.error()));
    } else {
      p->url = *u;
      p->target = u->path.empty() ? "/" : u->path;
      if (p->target[0] != '/') p->target.insert(0, "/");  // "http://h?x" has a query and no path
      if (u->tls()) {
        tls::ClientOptions o;
        o.verify = ssl_verify;
        auto ctx = tls::make_client_context(o);
        if (!ctx) c.fail(fmt::format("forward-auth: TLS client context: {}", ctx.error()));
        else p->tls = *ctx;
      }
    }
  }
  (void)scope;
  return done(c, p);
}

}  // namespace

extern const PluginDef kForwardAuth{"forward-auth", 2002, false, &create, nullptr, nullptr, &kFields};

}  // namespace holdfast::plugins
