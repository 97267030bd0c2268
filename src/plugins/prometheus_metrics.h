// APISIX's Prometheus metrics (apisix/plugins/prometheus/exporter.lua): the
// per-request series the prometheus plugin records (apisix_http_status,
// apisix_http_latency, apisix_bandwidth) and the node-level ones the export
// server adds on every scrape.
//
// Each worker records into its own shard; the only lock a worker takes is
// its own shard's, which nothing but a scrape (on the control thread) ever
// contends, so no lock is shared between workers on the request path. A
// scrape merges the shards. Series are bounded per shard (label values come
// from configuration, except the status code and the node address, but a
// bound keeps a hostile upstream set from growing memory without end).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace holdfast::plugins::prometheus {

// APISIX's DEFAULT_BUCKETS, in milliseconds.
std::vector<double> default_buckets();

struct Settings {
  std::string prefix = "apisix_";  // plugin_attr.prometheus.metric_prefix
  std::vector<double> buckets = default_buckets();  // plugin_attr.prometheus.default_buckets
  size_t max_series_per_worker = 100000;
};

// Called once before any worker runs (main).
void init(int workers, Settings s);
const Settings& settings();

// One request as the log phase sees it (exporter.lua http_log).
struct Observation {
  int status = 0;
  std::string_view route, matched_uri, matched_host, service, consumer, node;
  double latency_ms = 0;      // the whole request
  double upstream_ms = -1;    // <0: no upstream answered
  uint64_t ingress = 0;       // request bytes (head + body)
  uint64_t egress = 0;        // response bytes (head + body)
};
void observe(int worker, const Observation& o);

// apisix_http_status, apisix_http_latency and apisix_bandwidth, merged over
// the workers, in the Prometheus text format; empty families are left out.
std::string render_http();
// Series not recorded because a worker's shard was full.
uint64_t dropped_series();

// Node-level series, filled by main on each scrape.
struct NodeStats {
  // nginx stub_status: active, reading, writing, waiting, accepted, handled.
  uint64_t active = 0, reading = 0, writing = 0, waiting = 0, accepted = 0, handled = 0;
  uint64_t requests = 0;
  int etcd_reachable = -1;  // -1: configuration not from etcd (series left out, as APISIX)
  std::vector<std::pair<std::string, uint64_t>> modify_indexes;  // key -> index
  std::string hostname, version;
  struct Node {
    std::string name, ip;
    uint16_t port = 0;
    bool healthy = true;
  };
  std::vector<Node> upstreams;  // nodes of upstreams with health checks
  struct Dict {
    std::string name;
    uint64_t capacity = 0, free = 0;
  };
  std::vector<Dict> dicts;
};
std::string render_node(const NodeStats& n);

// A label value as the text format wants it: backslash, quote and newline
// escaped; other control characters (which Holdfast never writes) as %XX.
std::string escape_label(std::string_view v);

}  // namespace holdfast::plugins::prometheus
