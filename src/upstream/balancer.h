// Load balancers over an upstream's nodes: smooth weighted round-robin,
// consistent hash, least connections and EWMA latency, with node priority
// groups. State is per worker (no locks); each worker touches only its slot.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/resources.h"

namespace holdfast::upstream {

// Node health shared by workers (passive) and the control thread (active).
struct NodeHealth {
  std::atomic<bool> healthy{true};
  std::atomic<int> successes{0};
  std::atomic<int> http_failures{0};
  std::atomic<int> tcp_failures{0};
  std::atomic<int> timeouts{0};
};

class Balancer {
 public:
  Balancer(std::shared_ptr<const model::Upstream> conf, int workers);
  ~Balancer();

  // Picks a node not yet in `tried`. `hash_key` is used by chash. Returns -1
  // when nothing is left. Unhealthy nodes are skipped unless all are unhealthy
  // (then APISIX falls back to every node).
  int pick(int worker, const std::string& hash_key, const std::vector<int>& tried);
  void on_start(int worker, int node);
  void on_finish(int worker, int node, double latency_ms);

  const model::Upstream& conf() const { return *conf_; }
  size_t size() const { return conf_->nodes.size(); }
  NodeHealth& health(int node) { return health_[node]; }
  void set_health(std::shared_ptr<NodeHealth[]> h) { health_ = std::move(h); }
  std::shared_ptr<NodeHealth[]> health_table() const { return health_; }

 private:
  struct WorkerState {
    std::vector<int64_t> current;      // smooth RR current weights
    std::vector<int32_t> active;       // least_conn / ewma in-flight
    std::vector<double> ewma;          // ewma latency (ms)
    std::vector<int64_t> ewma_stamp;   // last update, ms
    char pad[64];
  };
  bool usable(int node, const std::vector<int>& tried, bool all_unhealthy) const;

  std::shared_ptr<const model::Upstream> conf_;
  std::vector<WorkerState> state_;
  std::vector<int> priorities_;                   // distinct, highest first
  std::vector<std::pair<uint32_t, int>> ring_;    // chash points
  std::shared_ptr<NodeHealth[]> health_;
};

uint32_t crc32(std::string_view s);

}  // namespace holdfast::upstream
