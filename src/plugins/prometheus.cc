// prometheus (priority 500): records each request it runs for into APISIX's
// apisix_http_status, apisix_http_latency and apisix_bandwidth series
// (plugins/prometheus_metrics.h), which the export server serves at
// plugin_attr.prometheus.export_addr (default 127.0.0.1:9091). As APISIX,
// only requests whose route, service or global rule has the plugin are
// recorded; the node-level series are always there.
#include "model/resources.h"
#include "plugins/common.h"
#include "plugins/prometheus_metrics.h"

namespace holdfast::plugins {
namespace {

// The route's path pattern that matched (APISIX's curr_req_matched._path):
// an exact path, else the longest prefix pattern ("/a/*") that covers the
// request, else the route's only pattern (a parameterised one).
std::string_view matched_uri(const model::Route& r, std::string_view uri) {
  std::string_view best;
  for (const auto& p : r.uris) {
    if (p == uri) return p;
    if (!p.empty() && p.back() == '*' && uri.substr(0, p.size() - 1) == std::string_view(p).substr(0, p.size() - 1) &&
        p.size() > best.size())
      best = p;
  }
  if (best.empty() && r.uris.size() == 1) best = r.uris[0];
  return best;
}

// The route's host pattern that matched (curr_req_matched._host): exact or
// a "*." wildcard; empty when the route names no hosts.
std::string_view matched_host(const model::Route& r, std::string_view host) {
  for (const auto& h : r.hosts) {
    if (h.size() == host.size() && std::equal(h.begin(), h.end(), host.begin(),
                                              [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; }))
      return h;
    if (h.size() > 1 && h[0] == '*' && host.size() >= h.size() - 1 &&
        host.substr(host.size() - (h.size() - 1)) == std::string_view(h).substr(1))
      return h;
  }
  return {};
}

class Prometheus final : public Plugin {
 public:
  bool prefer_name = false;

  void log(RequestCtx& ctx) const override {
    prometheus::Observation o;
    o.status = ctx.status;
    if (ctx.route) {
      const model::Route& r = *ctx.route;
      o.route = prefer_name && !r.name.empty() ? std::string_view(r.name) : ctx.route_id;
      o.service = prefer_name && !ctx.service_name.empty() ? ctx.service_name : std::string_view(r.service_id);
      o.matched_uri = matched_uri(r, ctx.uri);
      o.matched_host = matched_host(r, ctx.host);
    }
    if (ctx.consumer && ctx.consumer->conf) o.consumer = ctx.consumer->conf->username;
    o.node = ctx.balancer_ip;
    o.latency_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - ctx.start).count();
    o.upstream_ms = ctx.upstream_ms;
    o.ingress = ctx.request_length;
    o.egress = ctx.bytes_sent;
    prometheus::observe(ctx.worker, o);
  }
};

// APISIX's schema leaves other fields open: they are warned about and ignored.
const FieldRules kFields{.implemented = {"prefer_name"}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<Prometheus>();
  Checker c(conf, "prometheus");
  c.only(kFields.implemented);
  p->prefer_name = c.boolean("prefer_name").value_or(false);
  return done(c, p);
}

}  // namespace

extern const PluginDef kPrometheus{"prometheus", 500, false, &create, nullptr, nullptr, &kFields};

}  // namespace holdfast::plugins
