// proxy-mirror (priority 1010, rewrite phase): sends a copy of the request to
// another server and ignores its answer (APISIX 3.x). Unlike nginx's
// `mirror`, which APISIX uses, neither this request nor the next one on the
// connection ever waits for the copy: the plugin hands the pipeline a
// detached side request (plugins/side_request.h), which sends it as its own
// coroutine once the request goes upstream, with the client's body teed into
// a buffer of at most kMirrorBodyMax bytes. A larger body, more than
// proxy::kMaxDetachedPerWorker copies in flight on the worker, or a mirror
// slower than kMirrorTimeout drops the copy, counted in
// holdfast_proxy_mirror_* (proxy/side_request.h).
#include <fmt/format.h>

#include <boost/json.hpp>
#include <regex>

#include "http/codec.h"
#include "core/log.h"
#include "http/uri.h"
#include "plugins/common.h"
#include "plugins/side_request.h"
#include "tls/client_context.h"

namespace holdfast::plugins {
namespace {

constexpr uint64_t kMirrorBodyMax = 1 << 20;  // bytes of request body copied (framing included)
constexpr double kMirrorTimeout = 10;         // seconds for one copy: connect, send, response

class ProxyMirror final : public Plugin {
 public:
  std::string scheme, host;
  uint16_t port = 80;
  std::optional<std::string> path;
  bool prefix = false;
  double sample_ratio = 1;
  std::shared_ptr<tls::ClientContext> tls;

  Action rewrite(RequestCtx& ctx) const override {
    if (!ctx.req) return Action::next;
    if (sample_ratio < 1 && std::uniform_real_distribution<double>(0, 1)(rng()) >= sample_ratio) return Action::next;
    auto r = std::make_shared<SideRequest>();
    r->detached = true;
    r->scheme = scheme;
    r->host = host;
    r->port = port;
    r->method = std::string(ctx.req->method);
    // As APISIX: the upstream URI a plugin already set, else $uri?$args;
    // `path` replaces the path (keeping the query) or prefixes that URI.
    std::string query = std::string(ctx.query());
    std::string uri = ctx.upstream_target ? *ctx.upstream_target
                                          : http::uri_safe_encode(ctx.uri) +
                                                (query.empty() ? std::string() : "?" + http::escape_uri_control_chars(query));
    if (path && prefix) uri = *path + uri;
    else if (path) uri = *path + (query.empty() ? std::string() : "?" + http::escape_uri_control_chars(query));
    r->target = std::move(uri);
    // The headers are the request's as the plugins leave it (the proxy
    // fills them in when it sends the copy: a credential hide_credentials
    // removes later must not reach the mirror), with the client's Host
    // ($upstream_host with the default pass_host); framing and hop-by-hop
    // fields are the sender's.
    r->host_header = std::string(ctx.req->host);
    r->client_body_max = kMirrorBodyMax;
    r->timeout = kMirrorTimeout;
    r->max_response_body = 64 * 1024;  // the answer is read to keep the exchange whole, then dropped
    r->tls = tls;
    ctx.side = std::move(r);
    return Action::next;
  }
};

const FieldRules kFields{.implemented = {"host", "path", "path_concat_mode", "sample_ratio"}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<ProxyMirror>();
  Checker c(conf, "proxy-mirror");
  auto host = c.str("host", true);
  static const std::regex kHost(R"(^(http(s)?|grpc(s)?):\/\/([\da-zA-Z.-]+|\[[\da-fA-F:]+\])(:\d+)?$)");
  static const std::regex kPath(R"(^/[^?&]+$)");
  if (host && !c.failed() && !std::regex_search(*host, kHost))
    c.fail(fmt::format("property \"host\" validation failed: failed to match pattern "
                       "\"^(http(s)?|grpc(s)?):\\/\\/([\\da-zA-Z.-]+|\\[[\\da-fA-F:]+\\])(:\\d+)?$\" "
                       "with \"{}\"",
                       log::json_escape(*host)));
  auto path = c.str("path");
  if (path && !c.failed() && !std::regex_search(*path, kPath))
    c.fail(fmt::format("property \"path\" validation failed: failed to match pattern \"^/[^?&]+$\" with \"{}\"",
                       log::json_escape(*path)));
  p->path = path;
  if (!c.failed()) p->prefix = c.one_of("path_concat_mode", {"replace", "prefix"}, "replace").value_or("replace") == "prefix";
  if (!c.failed()) {
    if (auto r = c.number("sample_ratio"); r) {
      if (*r < 0.00001) c.fail(fmt::format("property \"sample_ratio\" validation failed: expected {} to be at least 1e-05",
                                           lua_number(json::value(*r))));
      else if (*r > 1) c.fail(fmt::format("property \"sample_ratio\" validation failed: expected {} to be at most 1",
                                          lua_number(json::value(*r))));
      else p->sample_ratio = *r;
    }
  }
  if (!c.failed() && host) {
    const auto sep = host->find("://");
    p->scheme = host->substr(0, sep);
    if (p->scheme == "grpc" || p->scheme == "grpcs")
      c.fail("property \"host\": grpc mirrors are not supported by Holdfast yet");
    std::string rest = host->substr(sep + 3);
    std::string port;
    if (rest[0] == '[') {
      const auto close = rest.find(']');
      p->host = rest.substr(1, close - 1);
      if (close + 1 < rest.size()) port = rest.substr(close + 2);
    } else if (const auto colon = rest.find(':'); colon != std::string::npos) {
      p->host = rest.substr(0, colon);
      port = rest.substr(colon + 1);
    } else {
      p->host = rest;
    }
    p->port = p->scheme == "https" ? 443 : 80;
    if (!port.empty()) {
      const long n = port.size() <= 5 ? std::stol(port) : 0;
      if (n < 1 || n > 65535) c.fail(fmt::format("property \"host\": invalid port {}", port));
      else p->port = static_cast<uint16_t>(n);
    }
    if (!c.failed() && p->scheme == "https") {
      // As nginx's proxy_pass to an https mirror: the certificate is not verified.
      tls::ClientOptions o;
      o.verify = false;
      auto ctx = tls::make_client_context(o);
      if (!ctx) c.fail(fmt::format("proxy-mirror: TLS client context: {}", ctx.error()));
      else p->tls = *ctx;
    }
  }
  return done(c, p);
}

}  // namespace

extern const PluginDef kProxyMirror{"proxy-mirror", 1010, false, &create, nullptr, nullptr, &kFields};

}  // namespace holdfast::plugins
