#include "upstream/balancer.h"

#include <gtest/gtest.h>

#include <map>

using namespace holdfast;

namespace {
std::shared_ptr<const model::Upstream> make_upstream(const std::string& type, std::vector<model::UpstreamNode> nodes) {
  auto u = std::make_shared<model::Upstream>();
  u->type = type;
  u->nodes = std::move(nodes);
  return u;
}
}  // namespace

TEST(Balancer, SmoothWeightedRoundRobin) {
  upstream::Balancer b(make_upstream("roundrobin", {{"a", 80, 5, 0}, {"b", 80, 1, 0}, {"c", 80, 1, 0}}), 1);
  std::string seq;
  for (int i = 0; i < 7; ++i) seq += "abc"[b.pick(0, "", {})];
  // nginx's smooth WRR sequence for weights 5,1,1
  EXPECT_EQ(seq, "aabacaa");
}

TEST(Balancer, SkipsTriedAndZeroWeight) {
  upstream::Balancer b(make_upstream("roundrobin", {{"a", 80, 1, 0}, {"b", 80, 0, 0}, {"c", 80, 1, 0}}), 1);
  for (int i = 0; i < 5; ++i) EXPECT_NE(b.pick(0, "", {}), 1);
  EXPECT_EQ(b.pick(0, "", {0}), 2);
  EXPECT_EQ(b.pick(0, "", {0, 2}), -1);
}

TEST(Balancer, PriorityGroups) {
  upstream::Balancer b(make_upstream("roundrobin", {{"backup", 80, 1, -1}, {"main1", 80, 1, 0}, {"main2", 80, 1, 0}}), 1);
  for (int i = 0; i < 6; ++i) EXPECT_NE(b.pick(0, "", {}), 0);
  EXPECT_EQ(b.pick(0, "", {1, 2}), 0);  // lower group only once the higher one is exhausted
}

TEST(Balancer, UnhealthyNodesSkippedUnlessAllUnhealthy) {
  upstream::Balancer b(make_upstream("roundrobin", {{"a", 80, 1, 0}, {"b", 80, 1, 0}}), 1);
  b.health(0).healthy = false;
  for (int i = 0; i < 4; ++i) EXPECT_EQ(b.pick(0, "", {}), 1);
  b.health(1).healthy = false;
  std::map<int, int> seen;
  for (int i = 0; i < 4; ++i) seen[b.pick(0, "", {})]++;
  EXPECT_EQ(seen.size(), 2u);
}

TEST(Balancer, ConsistentHashIsStableAndSpreads) {
  std::vector<model::UpstreamNode> nodes;
  for (int i = 0; i < 4; ++i) nodes.push_back({"10.0.0." + std::to_string(i), 80, 1, 0});
  auto up = make_upstream("chash", nodes);
  upstream::Balancer b(up, 2);
  std::map<int, int> counts;
  for (int k = 0; k < 1000; ++k) {
    std::string key = "user" + std::to_string(k);
    int n = b.pick(0, key, {});
    EXPECT_EQ(n, b.pick(1, key, {}));  // same answer on every worker
    counts[n]++;
  }
  EXPECT_EQ(counts.size(), 4u);
  for (auto& [n, c] : counts) EXPECT_GT(c, 100);
  // retry moves to another node
  int first = b.pick(0, "user1", {});
  int second = b.pick(0, "user1", {first});
  EXPECT_NE(first, second);
  EXPECT_GE(second, 0);
}

TEST(Balancer, LeastConnPrefersIdleNode) {
  upstream::Balancer b(make_upstream("least_conn", {{"a", 80, 1, 0}, {"b", 80, 1, 0}}), 1);
  b.on_start(0, 0);
  b.on_start(0, 0);
  EXPECT_EQ(b.pick(0, "", {}), 1);
  b.on_start(0, 1);
  b.on_start(0, 1);
  b.on_start(0, 1);
  EXPECT_EQ(b.pick(0, "", {}), 0);
}

TEST(Balancer, EwmaPrefersFasterNode) {
  upstream::Balancer b(make_upstream("ewma", {{"slow", 80, 1, 0}, {"fast", 80, 1, 0}}), 1);
  for (int i = 0; i < 5; ++i) {
    b.on_start(0, 0);
    b.on_finish(0, 0, 200);
    b.on_start(0, 1);
    b.on_finish(0, 1, 5);
  }
  EXPECT_EQ(b.pick(0, "", {}), 1);
}
