#include "upstream/balancer.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <limits>

namespace holdfast::upstream {

uint32_t crc32(std::string_view s) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char ch : s) c = table[(c ^ ch) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

Balancer::Balancer(std::shared_ptr<const model::Upstream> conf, int workers)
    : conf_(std::move(conf)), state_(workers) {
  size_t n = conf_->nodes.size();
  for (auto& s : state_) {
    s.current.assign(n, 0);
    s.active.assign(n, 0);
    s.ewma.assign(n, 0);
    s.ewma_stamp.assign(n, 0);
  }
  for (const auto& node : conf_->nodes) priorities_.push_back(node.priority);
  std::sort(priorities_.begin(), priorities_.end(), std::greater<>());
  priorities_.erase(std::unique(priorities_.begin(), priorities_.end()), priorities_.end());
  health_ = std::shared_ptr<NodeHealth[]>(new NodeHealth[n ? n : 1]);
  if (conf_->type == "chash") {
    for (size_t i = 0; i < n; ++i) {
      const auto& node = conf_->nodes[i];
      std::string id = node.host + ":" + std::to_string(node.port);
      int points = 160 * std::max(node.weight, 0);
      for (int p = 0; p < points; ++p) ring_.emplace_back(crc32(id + "#" + std::to_string(p)), static_cast<int>(i));
    }
    std::sort(ring_.begin(), ring_.end());
  }
}

Balancer::~Balancer() = default;

bool Balancer::usable(int node, const std::vector<int>& tried, bool all_unhealthy) const {
  if (conf_->nodes[node].weight <= 0) return false;
  if (std::find(tried.begin(), tried.end(), node) != tried.end()) return false;
  return all_unhealthy || health_[node].healthy.load(std::memory_order_relaxed);
}

int Balancer::pick(int worker, const std::string& hash_key, const std::vector<int>& tried) {
  const int n = static_cast<int>(conf_->nodes.size());
  if (n == 0) return -1;
  bool all_unhealthy = true;
  for (int i = 0; i < n; ++i)
    if (health_[i].healthy.load(std::memory_order_relaxed)) { all_unhealthy = false; break; }
  WorkerState& s = state_[worker];
  for (int prio : priorities_) {
    auto in_group = [&](int i) { return conf_->nodes[i].priority == prio && usable(i, tried, all_unhealthy); };
    int best = -1;
    if (conf_->type == "chash") {
      if (ring_.empty()) return -1;
      uint32_t h = crc32(hash_key);
      auto it = std::lower_bound(ring_.begin(), ring_.end(), std::make_pair(h, -1));
      for (size_t k = 0; k < ring_.size(); ++k, ++it) {
        if (it == ring_.end()) it = ring_.begin();
        if (in_group(it->second)) { best = it->second; break; }
      }
    } else if (conf_->type == "least_conn") {
      double best_score = std::numeric_limits<double>::max();
      for (int i = 0; i < n; ++i) {
        if (!in_group(i)) continue;
        double score = (s.active[i] + 1.0) / conf_->nodes[i].weight;
        if (score < best_score) { best_score = score; best = i; }
      }
    } else if (conf_->type == "ewma") {
      int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now().time_since_epoch()).count();
      double best_score = std::numeric_limits<double>::max();
      for (int i = 0; i < n; ++i) {
        if (!in_group(i)) continue;
        // decay the latency estimate towards 0 with a 10 s time constant
        double age = s.ewma_stamp[i] ? static_cast<double>(now - s.ewma_stamp[i]) : 0;
        double lat = s.ewma[i] * std::exp(-age / 10000.0);
        double score = lat * (s.active[i] + 1) / conf_->nodes[i].weight;
        if (score < best_score) { best_score = score; best = i; }
      }
    } else {
      // Smooth weighted round-robin (nginx): add weights, take the max, subtract the total.
      int64_t total = 0;
      for (int i = 0; i < n; ++i) {
        if (!in_group(i)) continue;
        s.current[i] += conf_->nodes[i].weight;
        total += conf_->nodes[i].weight;
        if (best < 0 || s.current[i] > s.current[best]) best = i;
      }
      if (best >= 0) s.current[best] -= total;
    }
    if (best >= 0) return best;
  }
  return -1;
}

void Balancer::on_start(int worker, int node) { ++state_[worker].active[node]; }

void Balancer::on_finish(int worker, int node, double latency_ms) {
  WorkerState& s = state_[worker];
  --s.active[node];
  if (conf_->type == "ewma") {
    int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now().time_since_epoch()).count();
    double age = s.ewma_stamp[node] ? static_cast<double>(now - s.ewma_stamp[node]) : 0;
    double w = std::exp(-age / 10000.0);
    s.ewma[node] = s.ewma[node] * w + latency_ms * (1 - w);
    if (s.ewma_stamp[node] == 0) s.ewma[node] = latency_ms;
    s.ewma_stamp[node] = now;
  }
}

}  // namespace holdfast::upstream
