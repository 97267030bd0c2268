#include "plugins/shared_dict.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <thread>
#include <vector>

using holdfast::plugins::SharedDict;

namespace {

constexpr int64_t kFar = int64_t{1} << 50;  // an expiry no test reaches

// Sets key's expiry when it is new; returns whether it was fresh.
bool put(SharedDict& d, const std::string& key, int64_t now, int64_t expire = kFar) {
  bool was_fresh = false;
  EXPECT_TRUE(d.update(key, now, [&](SharedDict::Slot& s, bool fresh) {
    was_fresh = fresh;
    if (fresh) s.expire_ms = expire;
    ++s.n[0];
  }));
  return was_fresh;
}

std::string key(int i, size_t len = 40) {
  std::string k = "route:r1:" + std::to_string(i) + ":";
  k.resize(len, 'x');
  return k;
}

// Inserts key(0), key(1), ... until the first eviction; returns how many
// entries the dict holds when full.
int fill(SharedDict& d, size_t len = 40) {
  for (int i = 0;; ++i) {
    put(d, key(i, len), 0);
    if (d.stats().evicted_unexpired > 0) return i;
  }
}

}  // namespace

TEST(SharedDict, CapacityInBytesIncludesKeys) {
  for (size_t len : {20u, 200u, 2000u}) {
    SharedDict d("t", 256 * 1024);
    for (int i = 0; i < 5000; ++i) {
      put(d, key(i, len), 0);
      ASSERT_LE(d.stats().used, d.capacity());
    }
    auto st = d.stats();
    EXPECT_EQ(st.used, st.entries * SharedDict::charge(len));
    // The capacity is used, not wasted: at least 80% of it holds entries.
    EXPECT_GE(st.used, d.capacity() * 8 / 10) << len;
    EXPECT_EQ(st.entries + st.evicted_unexpired, 5000u);
    // Longer keys, fewer entries: the key bytes are charged.
    if (len == 2000) {
      EXPECT_LT(st.entries, 130u);
    }
  }
}

TEST(SharedDict, MemoryStaysBoundedUnderManyDistinctKeys) {
  SharedDict d("t", 64 * 1024);
  for (int i = 0; i < 100000; ++i) put(d, key(i, 1024), 0);
  auto st = d.stats();
  EXPECT_LE(st.used, d.capacity());
  EXPECT_LE(st.entries, d.capacity() / 1024);
  EXPECT_EQ(st.entries + st.evicted_unexpired, 100000u);
}

TEST(SharedDict, LeastRecentlyUsedIsEvictedFirst) {
  SharedDict d("t", 16 * 1024);  // one shard: eviction order is global
  int full = fill(d);
  // key(0) went when key(full) came in.
  ASSERT_EQ(d.stats().evicted_unexpired, 1u);
  // Touch key(1): key(2) is now the least recently used.
  EXPECT_FALSE(put(d, key(1), 0));
  put(d, key(full + 1), 0);
  EXPECT_EQ(d.stats().evicted_unexpired, 2u);
  EXPECT_FALSE(put(d, key(1), 0));  // still there
  EXPECT_FALSE(put(d, key(3), 0));
  EXPECT_TRUE(put(d, key(2), 0));   // was evicted
}

TEST(SharedDict, ExpiredEntriesGoBeforeLiveOnes) {
  SharedDict d("t", 16 * 1024);
  int full = fill(d);
  auto before = d.stats();
  // A short-lived entry pushes out the LRU (key(1)) and then expires.
  put(d, key(-1), 10, 100);  // same size as the others
  EXPECT_EQ(d.stats().evicted_unexpired, before.evicted_unexpired + 1);
  // At t=200 key(-1) has expired; it is the most recently used, yet it goes
  // first, and no live entry is lost.
  put(d, key(full + 1), 200);
  auto after = d.stats();
  EXPECT_EQ(after.evicted_expired, 1u);
  EXPECT_EQ(after.evicted_unexpired, before.evicted_unexpired + 1);
  // key(2) is the LRU live entry (key(0), key(1) were evicted) and survived.
  EXPECT_FALSE(put(d, key(2), 200));
}

TEST(SharedDict, AllExpiredGoBeforeAnyLiveWhateverTheirLruPlace) {
  SharedDict probe("t", 32 * 1024);
  const int full = fill(probe);  // entries of this size the dict holds
  SharedDict d("t", 32 * 1024);
  std::mt19937 rng(7);
  std::vector<int64_t> expiry;
  for (int i = 0; i < full; ++i) {
    expiry.push_back(1000 + static_cast<int64_t>(rng() % 1000));
    put(d, key(i), 1, expiry.back());
  }
  ASSERT_EQ(d.stats().evicted_unexpired + d.stats().evicted_expired, 0u);
  const int64_t t = 1500;
  uint64_t expired = 0;
  for (int64_t e : expiry) expired += e <= t;
  ASSERT_GT(expired, 10u);
  ASSERT_LT(expired, static_cast<uint64_t>(full) - 10);
  for (uint64_t i = 0; i < expired; ++i) put(d, key(100000 + static_cast<int>(i)), t);
  EXPECT_EQ(d.stats().evicted_expired, expired);
  EXPECT_EQ(d.stats().evicted_unexpired, 0u);
  for (int i = 0; i < full; ++i) {
    if (expiry[i] > t) {
      EXPECT_FALSE(put(d, key(i), t)) << i;  // every live one survived
    }
  }
  put(d, key(200000), t);
  EXPECT_EQ(d.stats().evicted_unexpired, 1u);
}

TEST(SharedDict, ExpiredKeyStartsFresh) {
  SharedDict d("t", 16 * 1024);
  EXPECT_TRUE(put(d, "k", 0, 100));
  EXPECT_FALSE(put(d, "k", 99, 100));
  int64_t seen = -1;
  d.update("k", 100, [&](SharedDict::Slot& s, bool fresh) {
    EXPECT_TRUE(fresh);
    seen = s.n[0];
    s.expire_ms = 300;
  });
  EXPECT_EQ(seen, 0);  // the old count is gone
  EXPECT_FALSE(put(d, "k", 299));
  EXPECT_EQ(d.stats().entries, 1u);
  EXPECT_EQ(d.stats().evicted_expired, 0u);  // reused in place, not evicted
}

TEST(SharedDict, EntryLargerThanAShardIsRefused) {
  SharedDict d("t", 16 * 1024);
  bool called = false;
  EXPECT_FALSE(d.update(std::string(20000, 'k'), 0, [&](SharedDict::Slot&, bool) { called = true; }));
  EXPECT_FALSE(called);
  EXPECT_EQ(d.stats().no_memory, 1u);
  EXPECT_EQ(d.stats().entries, 0u);
}

TEST(SharedDict, EntriesWithoutExpiryAreEvictedByLru) {
  SharedDict d("t", 16 * 1024);
  d.update("forever", 0, [](SharedDict::Slot& s, bool) { ++s.n[0]; });
  for (int i = 0; d.stats().evicted_unexpired == 0; ++i) put(d, key(i), 0);
  EXPECT_TRUE(d.update("forever", 0, [](SharedDict::Slot& s, bool fresh) {
    EXPECT_TRUE(fresh);
    EXPECT_EQ(s.n[0], 0);
  }));
}

TEST(SharedDict, Erase) {
  SharedDict d("t", 16 * 1024);
  put(d, "a", 0);
  EXPECT_TRUE(d.erase("a"));
  EXPECT_FALSE(d.erase("a"));
  EXPECT_EQ(d.stats().entries, 0u);
  EXPECT_EQ(d.stats().used, 0u);
  EXPECT_TRUE(put(d, "a", 0));
}

TEST(SharedDict, WorkersShareCountsWithoutLoss) {
  SharedDict d("t", 10 * 1024 * 1024);  // several shards, no eviction
  constexpr int kThreads = 4, kOps = 20000, kKeys = 64;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kOps; ++i)
        d.update(key((i * 7 + t) % kKeys), 0, [](SharedDict::Slot& s, bool) { ++s.n[0]; });
    });
  for (auto& th : threads) th.join();
  int64_t total = 0;
  for (int k = 0; k < kKeys; ++k) d.update(key(k), 0, [&](SharedDict::Slot& s, bool) { total += s.n[0]; });
  EXPECT_EQ(total, int64_t{kThreads} * kOps);
  EXPECT_EQ(d.stats().entries, static_cast<uint64_t>(kKeys));
}

TEST(SharedDict, RegistryKeepsOneStorePerName) {
  holdfast::plugins::configure_shared_dicts({{"unit-test-dict", 64 * 1024}});
  SharedDict& a = holdfast::plugins::shared_dict("unit-test-dict");
  SharedDict& b = holdfast::plugins::shared_dict("unit-test-dict");
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(a.capacity(), 64u * 1024);
  put(a, "x", 0);
  std::string text = holdfast::plugins::shared_dicts_prometheus();
  EXPECT_NE(text.find("holdfast_shared_dict_capacity_bytes{dict=\"unit-test-dict\"} 65536"), std::string::npos) << text;
  EXPECT_NE(text.find("holdfast_shared_dict_entries{dict=\"unit-test-dict\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("holdfast_shared_dict_evictions_total{dict=\"unit-test-dict\",reason=\"unexpired\"} 0"),
            std::string::npos) << text;
}

// limit-conn's leaving: only a key that is there is touched, nothing is
// added (no allocation where a failure could not be handled), and an
// expired slot reads as fresh.
TEST(SharedDict, UpdateExistingNeverAdds) {
  SharedDict d("t", 1 << 20);
  bool called = false;
  EXPECT_FALSE(d.update_existing("absent", 0, [&](SharedDict::Slot&, bool) { called = true; }));
  EXPECT_FALSE(called);
  EXPECT_EQ(d.stats().entries, 0u);
  put(d, "k", 0, 100);
  put(d, "k", 1, 100);
  int64_t seen = -1;
  bool was_fresh = true;
  EXPECT_TRUE(d.update_existing("k", 50, [&](SharedDict::Slot& s, bool fresh) {
    was_fresh = fresh;
    seen = s.n[0]--;
  }));
  EXPECT_FALSE(was_fresh);
  EXPECT_EQ(seen, 2);
  EXPECT_TRUE(d.update_existing("k", 100, [&](SharedDict::Slot& s, bool fresh) {
    was_fresh = fresh;
    seen = s.n[0];
  }));
  EXPECT_TRUE(was_fresh);
  EXPECT_EQ(seen, 0);
  EXPECT_EQ(d.stats().entries, 1u);
}
