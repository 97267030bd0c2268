#include "proxy/prometheus_export.h"

#include <unistd.h>

#include <set>

#include "config/etcd/etcd_source.h"
#include "plugins/prometheus_metrics.h"
#include "plugins/shared_dict.h"
#include "proxy/worker.h"
#include "snapshot/snapshot.h"
#include "upstream/balancer.h"

namespace holdfast::proxy {

namespace {

std::string hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return {};
  return buf;
}

// Nodes of every upstream with health checks, as APISIX's control API
// lists its checkers: the name is the resource key the upstream lives in.
void upstream_nodes(const snapshot::Snapshot& snap, plugins::prometheus::NodeStats& n) {
  std::set<std::string> seen;
  auto add = [&](const snapshot::CompiledUpstream& u) {
    if (!u.conf->checks || !seen.insert(u.key).second) return;
    for (size_t i = 0; i < u.conf->nodes.size(); ++i) {
      const auto& node = u.conf->nodes[i];
      std::string ip = node.host;
      if (i < u.endpoints.size() && u.endpoints[i]) ip = u.endpoints[i]->address().to_string();
      n.upstreams.push_back({"/apisix/" + u.key, ip, node.port,
                             u.balancer->health(static_cast<int>(i)).healthy.load(std::memory_order_relaxed)});
    }
  };
  for (const auto& [id, u] : snap.upstreams)
    if (u) add(*u);
  for (const auto& r : snap.routes)
    if (r.upstream) add(*r.upstream);
  for (const auto& u : snap.split_upstreams) add(*u);  // traffic-split's inline upstreams
}

}  // namespace

std::string prometheus_page(const ExportInputs& in, const std::string& holdfast_metrics) {
  plugins::prometheus::NodeStats n;
  for (const auto& w : *in.workers) {
    const auto open = static_cast<uint64_t>(std::max<int64_t>(w->open_conns_.load(std::memory_order_relaxed), 0));
    const auto busy = static_cast<uint64_t>(std::max<int64_t>(w->active_requests_.load(std::memory_order_relaxed), 0));
    n.active += open;
    // A request counts from its head's arrival: a connection still reading
    // a head is counted as waiting, so `reading` stays 0.
    n.writing += std::min(busy, open);
    n.waiting += open - std::min(busy, open);
    const uint64_t accepted = w->accepted_total_.load(std::memory_order_relaxed);
    n.accepted += accepted;
    n.handled += accepted;
    n.requests += w->requests_total_.load(std::memory_order_relaxed);
  }
  if (in.etcd_configured) {
    n.etcd_reachable = in.etcd && in.etcd->reachable() ? 1 : 0;
    if (in.snapshot && in.snapshot->source == "etcd") {
      char* end = nullptr;
      const uint64_t rev = std::strtoull(in.snapshot->revision.c_str(), &end, 10);
      if (end && *end == '\0' && !in.snapshot->revision.empty()) n.modify_indexes.push_back({"x_etcd_index", rev});
    }
  }
  n.hostname = hostname();
  n.version = HOLDFAST_VERSION;
  if (in.snapshot) upstream_nodes(*in.snapshot, n);
  for (const auto& [name, s] : plugins::shared_dict_stats())
    n.dicts.push_back({name, s.capacity, s.capacity > s.used ? s.capacity - s.used : 0});
  std::string out = plugins::prometheus::render_node(n);
  out += plugins::prometheus::render_http();
  const uint64_t dropped = plugins::prometheus::dropped_series();
  out += "# HELP holdfast_prometheus_series_dropped_total Requests not recorded because a worker held its maximum "
         "number of series\n# TYPE holdfast_prometheus_series_dropped_total counter\n";
  out += "holdfast_prometheus_series_dropped_total " + std::to_string(dropped) + "\n";
  out += holdfast_metrics;
  return out;
}

}  // namespace holdfast::proxy
