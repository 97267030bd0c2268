#include "plugins/prometheus_metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace holdfast::plugins::prometheus {
namespace {

// One histogram: counts per bucket (not cumulative; the last is +Inf only).
struct Hist {
  std::vector<uint64_t> counts;
  double sum = 0;
  uint64_t count = 0;
  void observe(double v, const std::vector<double>& bounds) {
    if (counts.empty()) counts.assign(bounds.size() + 1, 0);
    size_t i = std::lower_bound(bounds.begin(), bounds.end(), v) - bounds.begin();
    ++counts[i];
    sum += v;
    ++count;
  }
  void merge(const Hist& o) {
    if (o.counts.empty()) return;
    if (counts.empty()) counts.assign(o.counts.size(), 0);
    for (size_t i = 0; i < counts.size(); ++i) counts[i] += o.counts[i];
    sum += o.sum;
    count += o.count;
  }
};

// What one (route, service, consumer, node) has: latency by type and bytes.
struct Base {
  Hist request, upstream, apisix;
  uint64_t ingress = 0, egress = 0;
  void merge(const Base& o) {
    request.merge(o.request);
    upstream.merge(o.upstream);
    apisix.merge(o.apisix);
    ingress += o.ingress;
    egress += o.egress;
  }
};

struct Shard {
  std::mutex mu;  // taken by its worker per request and by a scrape
  std::unordered_map<std::string, Base> base;        // route\0service\0consumer\0node
  std::unordered_map<std::string, uint64_t> status;  // code\0route\0uri\0host\0service\0consumer\0node
  uint64_t dropped = 0;
};

struct Registry {
  Settings settings;
  std::vector<std::unique_ptr<Shard>> shards;
};

Registry& registry() {
  static Registry r;
  return r;
}

// Label values joined by NUL (a NUL inside a value is written as %00, as
// escape_label would print it anyway).
void append_value(std::string& key, std::string_view v) {
  if (v.find('\0') == std::string_view::npos) {
    key.append(v);
  } else {
    for (char c : v) {
      if (c == '\0') key.append("%00");
      else key.push_back(c);
    }
  }
  key.push_back('\0');
}

std::vector<std::string_view> split(std::string_view key) {
  std::vector<std::string_view> out;
  size_t at = 0;
  while (at < key.size()) {
    size_t end = key.find('\0', at);
    out.push_back(key.substr(at, end - at));
    at = end + 1;
  }
  return out;
}

// nginx-lua-prometheus prints every bucket bound of a histogram with one
// width (e.g. "00001.0" ... "60000.0" for APISIX's defaults); dashboards do
// not care, but the text stays the same as APISIX's.
std::vector<std::string> bucket_labels(const std::vector<double>& bounds) {
  size_t order = 1, precision = 1;
  for (double b : bounds) {
    std::string s = fmt::format("{:f}", b);
    while (!s.empty() && s.back() == '0') s.pop_back();
    size_t dot = s.find('.');
    order = std::max(order, dot);
    precision = std::max(precision, s.size() - dot - 1);
  }
  std::vector<std::string> out;
  for (double b : bounds) out.push_back(fmt::format("{:0{}.{}f}", b, order + precision + 1, precision));
  return out;
}

void labels_out(std::string& out, const char* const* names, const std::vector<std::string_view>& values) {
  out.push_back('{');
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out.push_back(',');
    out += names[i];
    out += "=\"";
    out += escape_label(values[i]);
    out.push_back('"');
  }
}

}  // namespace

std::vector<double> default_buckets() {
  return {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000};
}

void init(int workers, Settings s) {
  Registry& r = registry();
  r.settings = std::move(s);
  r.shards.clear();
  for (int i = 0; i < std::max(workers, 1); ++i) r.shards.push_back(std::make_unique<Shard>());
}

const Settings& settings() { return registry().settings; }

void observe(int worker, const Observation& o) {
  Registry& r = registry();
  if (r.shards.empty()) return;  // the export server is off: nothing reads them
  Shard& s = *r.shards[static_cast<size_t>(worker) % r.shards.size()];
  // Keys are built before the lock: the scrape waits only for the updates.
  thread_local std::string base_key, status_key;
  base_key.clear();
  append_value(base_key, o.route);
  append_value(base_key, o.service);
  append_value(base_key, o.consumer);
  append_value(base_key, o.node);
  status_key.clear();
  fmt::format_to(std::back_inserter(status_key), "{}", o.status);
  status_key.push_back('\0');
  append_value(status_key, o.route);
  append_value(status_key, o.matched_uri);
  append_value(status_key, o.matched_host);
  append_value(status_key, o.service);
  append_value(status_key, o.consumer);
  append_value(status_key, o.node);
  const auto& bounds = r.settings.buckets;
  const double apisix_ms = o.upstream_ms >= 0 ? std::max(0.0, o.latency_ms - o.upstream_ms) : o.latency_ms;
  std::lock_guard lk(s.mu);
  const size_t max = r.settings.max_series_per_worker;
  auto b = s.base.find(base_key);
  if (b == s.base.end()) {
    if (s.base.size() + s.status.size() >= max) {
      ++s.dropped;
    } else {
      b = s.base.emplace(base_key, Base{}).first;
    }
  }
  if (b != s.base.end()) {
    b->second.request.observe(o.latency_ms, bounds);
    if (o.upstream_ms >= 0) b->second.upstream.observe(o.upstream_ms, bounds);
    b->second.apisix.observe(apisix_ms, bounds);
    b->second.ingress += o.ingress;
    b->second.egress += o.egress;
  }
  auto st = s.status.find(status_key);
  if (st != s.status.end()) {
    ++st->second;
  } else if (s.base.size() + s.status.size() >= max) {
    ++s.dropped;
  } else {
    s.status.emplace(status_key, 1);
  }
}

uint64_t dropped_series() {
  uint64_t n = 0;
  for (auto& s : registry().shards) {
    std::lock_guard lk(s->mu);
    n += s->dropped;
  }
  return n;
}

std::string render_http() {
  Registry& r = registry();
  std::map<std::string, Base> base;
  std::map<std::string, uint64_t> status;
  for (auto& s : r.shards) {
    std::lock_guard lk(s->mu);
    for (const auto& [k, v] : s->base) base[k].merge(v);
    for (const auto& [k, v] : s->status) status[k] += v;
  }
  const std::string& p = r.settings.prefix;
  std::string out;
  if (!status.empty()) {
    static const char* const names[] = {"code", "route", "matched_uri", "matched_host", "service", "consumer", "node"};
    out += fmt::format("# HELP {0}http_status HTTP status codes per service in APISIX\n# TYPE {0}http_status counter\n", p);
    for (const auto& [k, v] : status) {
      out += p;
      out += "http_status";
      labels_out(out, names, split(k));
      out += fmt::format("}} {}\n", v);
    }
  }
  if (!base.empty()) {
    static const char* const names[] = {"type", "route", "service", "consumer", "node", "le"};
    const auto& bounds = r.settings.buckets;
    const std::vector<std::string> les = bucket_labels(bounds);
    out += fmt::format("# HELP {0}http_latency HTTP request latency in milliseconds per service in APISIX\n"
                       "# TYPE {0}http_latency histogram\n", p);
    for (const auto& [k, v] : base) {
      auto labels = split(k);
      using Typed = std::pair<const char*, const Hist*>;
      for (auto [type, h] : {Typed{"request", &v.request}, Typed{"upstream", &v.upstream}, Typed{"apisix", &v.apisix}}) {
        if (!h->count) continue;
        std::vector<std::string_view> vals{type};
        vals.insert(vals.end(), labels.begin(), labels.end());
        uint64_t cum = 0;
        for (size_t i = 0; i <= bounds.size(); ++i) {
          cum += h->counts[i];
          vals.resize(labels.size() + 1);
          vals.push_back(i < bounds.size() ? std::string_view(les[i]) : std::string_view("+Inf"));
          out += p;
          out += "http_latency_bucket";
          labels_out(out, names, vals);
          out += fmt::format("}} {}\n", cum);
        }
        vals.resize(labels.size() + 1);
        using Line = std::pair<const char*, std::string>;
        for (const auto& [suffix, text] : {Line{"_count", fmt::format("{}", h->count)}, Line{"_sum", fmt::format("{}", h->sum)}}) {
          out += p;
          out += "http_latency";
          out += suffix;
          labels_out(out, names, vals);
          out += fmt::format("}} {}\n", text);
        }
      }
    }
    out += fmt::format("# HELP {0}bandwidth Total bandwidth in bytes consumed per service in APISIX\n"
                       "# TYPE {0}bandwidth counter\n", p);
    for (const auto& [k, v] : base) {
      auto labels = split(k);
      using Bytes = std::pair<const char*, uint64_t>;
      for (auto [type, n] : {Bytes{"ingress", v.ingress}, Bytes{"egress", v.egress}}) {
        std::vector<std::string_view> vals{type};
        vals.insert(vals.end(), labels.begin(), labels.end());
        out += p;
        out += "bandwidth";
        labels_out(out, names, vals);
        out += fmt::format("}} {}\n", n);
      }
    }
  }
  return out;
}

std::string render_node(const NodeStats& n) {
  const std::string& p = registry().settings.prefix;
  std::string out;
  auto family = [&](const char* name, const char* help) {
    out += fmt::format("# HELP {0}{1} {2}\n# TYPE {0}{1} gauge\n", p, name, help);
  };
  family("nginx_http_current_connections", "Number of HTTP connections");
  using State = std::pair<const char*, uint64_t>;
  for (auto [state, v] : {State{"accepted", n.accepted}, State{"active", n.active}, State{"handled", n.handled},
                          State{"reading", n.reading}, State{"waiting", n.waiting}, State{"writing", n.writing}})
    out += fmt::format("{}nginx_http_current_connections{{state=\"{}\"}} {}\n", p, state, v);
  family("http_requests_total", "The total number of client requests since APISIX started");
  out += fmt::format("{}http_requests_total {}\n", p, n.requests);
  if (n.etcd_reachable >= 0) {
    family("etcd_reachable", "Config server etcd reachable from APISIX, 0 is unreachable");
    out += fmt::format("{}etcd_reachable {}\n", p, n.etcd_reachable);
  }
  family("node_info", "Info of APISIX node");
  out += fmt::format("{}node_info{{hostname=\"{}\",version=\"{}\"}} 1\n", p, escape_label(n.hostname),
                     escape_label(n.version));
  if (!n.modify_indexes.empty()) {
    family("etcd_modify_indexes", "Etcd modify index for APISIX keys");
    for (const auto& [k, v] : n.modify_indexes)
      out += fmt::format("{}etcd_modify_indexes{{key=\"{}\"}} {}\n", p, escape_label(k), v);
  }
  if (!n.dicts.empty()) {
    family("shared_dict_capacity_bytes", "The capacity of each nginx shared DICT since APISIX start");
    for (const auto& d : n.dicts)
      out += fmt::format("{}shared_dict_capacity_bytes{{name=\"{}\"}} {}\n", p, escape_label(d.name), d.capacity);
    family("shared_dict_free_space_bytes", "The free space of each nginx shared DICT since APISIX start");
    for (const auto& d : n.dicts)
      out += fmt::format("{}shared_dict_free_space_bytes{{name=\"{}\"}} {}\n", p, escape_label(d.name), d.free);
  }
  if (!n.upstreams.empty()) {
    family("upstream_status", "Upstream status from health check");
    for (const auto& u : n.upstreams)
      out += fmt::format("{}upstream_status{{name=\"{}\",ip=\"{}\",port=\"{}\"}} {}\n", p, escape_label(u.name),
                         escape_label(u.ip), u.port, u.healthy ? 1 : 0);
  }
  return out;
}

std::string escape_label(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (unsigned char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else if (c < 0x20 || c == 0x7f) out += fmt::format("%{:02X}", c);
    else out.push_back(static_cast<char>(c));
  }
  return out;
}

}  // namespace holdfast::plugins::prometheus
