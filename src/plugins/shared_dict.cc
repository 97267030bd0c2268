// The bounded keyed store behind the rate-limiting plugins. Each shard is a
// chained hash table of nodes that also sit on an LRU list and, when they
// expire, in a min-heap by expiry; all three are intrusive, and the bucket
// array and heap are sized when the dict is built, so a request under the
// lock only moves pointers. Nodes are allocated and freed outside the lock.
#include "plugins/shared_dict.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <random>
#include <vector>

namespace holdfast::plugins {

struct SharedDict::Node {
  Node* hnext = nullptr;  // bucket chain; also chains evicted nodes until they are freed
  Node* prev = nullptr;   // LRU list: head is the most recently used
  Node* next = nullptr;
  uint64_t hash = 0;
  Slot slot;
  uint32_t heap_idx = kNotInHeap;
  uint32_t key_len = 0;

  static constexpr uint32_t kNotInHeap = UINT32_MAX;
  char* key() { return reinterpret_cast<char*>(this + 1); }
  std::string_view key_view() { return {key(), key_len}; }
};

struct alignas(64) SharedDict::Shard {
  std::mutex mu;
  Node** buckets = nullptr;
  size_t mask = 0;
  Node* head = nullptr;
  Node* tail = nullptr;
  std::vector<Node*> heap;  // min-heap on slot.expire_ms of the nodes that expire
  uint64_t budget = 0;      // bytes for entries
  uint64_t used = 0;
  uint64_t entries = 0;
  uint64_t evicted_expired = 0, evicted_unexpired = 0, no_memory = 0;

  ~Shard() { std::free(buckets); }

  Node* find(uint64_t h, std::string_view key) const {
    for (Node* n = buckets[h & mask]; n; n = n->hnext)
      if (n->hash == h && n->key_view() == key) return n;
    return nullptr;
  }

  void touch(Node* n) {
    if (head == n) return;
    unlink_lru(n);
    push_front(n);
  }
  void push_front(Node* n) {
    n->prev = nullptr;
    n->next = head;
    if (head) head->prev = n;
    head = n;
    if (!tail) tail = n;
  }
  void unlink_lru(Node* n) {
    (n->prev ? n->prev->next : head) = n->next;
    (n->next ? n->next->prev : tail) = n->prev;
    n->prev = n->next = nullptr;
  }

  // --- expiry heap ---
  bool less(size_t a, size_t b) const { return heap[a]->slot.expire_ms < heap[b]->slot.expire_ms; }
  void place(size_t i) { heap[i]->heap_idx = static_cast<uint32_t>(i); }
  void swap_at(size_t a, size_t b) {
    std::swap(heap[a], heap[b]);
    place(a);
    place(b);
  }
  void sift_up(size_t i) {
    while (i > 0 && less(i, (i - 1) / 2)) {
      swap_at(i, (i - 1) / 2);
      i = (i - 1) / 2;
    }
  }
  void sift_down(size_t i) {
    for (;;) {
      size_t l = 2 * i + 1, r = l + 1, m = i;
      if (l < heap.size() && less(l, m)) m = l;
      if (r < heap.size() && less(r, m)) m = r;
      if (m == i) return;
      swap_at(i, m);
      i = m;
    }
  }
  void heap_remove(Node* n) {
    size_t i = n->heap_idx;
    n->heap_idx = Node::kNotInHeap;
    Node* last = heap.back();
    heap.pop_back();
    if (last == n) return;
    heap[i] = last;
    place(i);
    sift_up(i);
    sift_down(last->heap_idx);
  }
  // After a caller changed n's expiry from `before`.
  void heap_update(Node* n, int64_t before) {
    const int64_t now_exp = n->slot.expire_ms;
    if (now_exp == before) return;
    if (n->heap_idx == Node::kNotInHeap) {
      if (now_exp == 0) return;
      heap.push_back(n);
      place(heap.size() - 1);
      sift_up(heap.size() - 1);
    } else if (now_exp == 0) {
      heap_remove(n);
    } else {
      sift_up(n->heap_idx);
      sift_down(n->heap_idx);
    }
  }

  void insert(Node* n) {
    Node*& b = buckets[n->hash & mask];
    n->hnext = b;
    b = n;
    push_front(n);
    used += SharedDict::charge(n->key_len);
    ++entries;
  }
  // Takes n out of every structure (the caller frees it after unlocking).
  void remove(Node* n) {
    Node** p = &buckets[n->hash & mask];
    while (*p != n) p = &(*p)->hnext;
    *p = n->hnext;
    n->hnext = nullptr;
    unlink_lru(n);
    if (n->heap_idx != Node::kNotInHeap) heap_remove(n);
    used -= SharedDict::charge(n->key_len);
    --entries;
  }

  // Evicts until `need` more bytes fit: entries already expired first (the
  // earliest expiry), then the least recently used. Victims are chained on
  // `dead` to be freed outside the lock.
  void make_room(uint64_t need, int64_t now_ms, Node*& dead) {
    while (used + need > budget && tail) {
      Node* victim;
      if (!heap.empty() && heap.front()->slot.expire_ms <= now_ms) {
        victim = heap.front();
        ++evicted_expired;
      } else {
        // The tail is not expired: an expired one would be at the heap's top.
        victim = tail;
        ++evicted_unexpired;
      }
      remove(victim);
      victim->hnext = dead;
      dead = victim;
    }
  }
};

namespace {

constexpr uint64_t kShardTarget = 256 * 1024;  // bytes per shard before the dict splits further
constexpr size_t kMaxShards = 16;
constexpr uint64_t kBytesPerBucket = 128;      // one bucket per this many bytes of capacity
constexpr size_t kMaxBuckets = size_t{1} << 18;  // per shard; chains grow beyond that
constexpr size_t kMaxHeapReserve = size_t{1} << 18;

// SipHash-1-3 with a random key: the bucket of a key cannot be predicted, so
// a client cannot pile its keys into one chain.
uint64_t siphash13(const uint64_t k[2], std::string_view s) {
  uint64_t v0 = 0x736f6d6570736575ULL ^ k[0], v1 = 0x646f72616e646f6dULL ^ k[1];
  uint64_t v2 = 0x6c7967656e657261ULL ^ k[0], v3 = 0x7465646279746573ULL ^ k[1];
  auto round = [&] {
    v0 += v1; v1 = std::rotl(v1, 13); v1 ^= v0; v0 = std::rotl(v0, 32);
    v2 += v3; v3 = std::rotl(v3, 16); v3 ^= v2;
    v0 += v3; v3 = std::rotl(v3, 21); v3 ^= v0;
    v2 += v1; v1 = std::rotl(v1, 17); v1 ^= v2; v2 = std::rotl(v2, 32);
  };
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t m = 0;
    for (int j = 0; j < 8; ++j) m |= uint64_t{p[i + j]} << (8 * j);
    v3 ^= m;
    round();
    v0 ^= m;
  }
  uint64_t b = uint64_t{n} << 56;
  for (size_t j = 0; i + j < n; ++j) b |= uint64_t{p[i + j]} << (8 * j);
  v3 ^= b;
  round();
  v0 ^= b;
  v2 ^= 0xff;
  round();
  round();
  round();
  return v0 ^ v1 ^ v2 ^ v3;
}

}  // namespace

SharedDict::Node* SharedDict::new_node(std::string_view key, uint64_t h) {
  void* mem = ::operator new(sizeof(SharedDict::Node) + key.size());
  auto* n = new (mem) SharedDict::Node;
  n->hash = h;
  n->key_len = static_cast<uint32_t>(key.size());
  if (!key.empty()) std::memcpy(n->key(), key.data(), key.size());
  return n;
}

void SharedDict::free_nodes(Node* n) {
  while (n) {
    SharedDict::Node* next = n->hnext;
    n->~Node();
    ::operator delete(n);
    n = next;
  }
}

size_t SharedDict::charge(size_t key_len) {
  // The node with the key inline, plus its slot in the expiry heap.
  static_assert(sizeof(Node) + sizeof(Node*) == 72, "README: an entry costs its key plus 72 bytes");
  return (sizeof(Node) + sizeof(Node*) + key_len + 15) & ~size_t{15};
}

SharedDict::SharedDict(std::string name, uint64_t capacity_bytes)
    : name_(std::move(name)), capacity_(capacity_bytes) {
  std::random_device rd;
  seed_[0] = (uint64_t{rd()} << 32) | rd();
  seed_[1] = (uint64_t{rd()} << 32) | rd();
  shard_count_ = std::clamp<size_t>(std::bit_floor(std::max<uint64_t>(capacity_ / kShardTarget, 1)), 1, kMaxShards);
  shards_ = std::make_unique<Shard[]>(shard_count_);
  const uint64_t per_shard = capacity_ / shard_count_;
  for (size_t i = 0; i < shard_count_; ++i) {
    Shard& s = shards_[i];
    size_t buckets = std::clamp<size_t>(std::bit_floor(std::max<uint64_t>(per_shard / kBytesPerBucket, 1)), 16, kMaxBuckets);
    // calloc: a large zeroed block comes straight from fresh pages, so an
    // unused dict costs no resident memory.
    s.buckets = static_cast<Node**>(std::calloc(buckets, sizeof(Node*)));
    if (!s.buckets) throw std::bad_alloc();
    s.mask = buckets - 1;
    // The buckets are part of the capacity, as nginx's zone holds its own index.
    const uint64_t fixed = buckets * sizeof(Node*) + sizeof(Shard);
    s.budget = per_shard > fixed ? per_shard - fixed : 0;
    s.heap.reserve(std::min<uint64_t>(s.budget / charge(0) + 1, kMaxHeapReserve));
  }
}

SharedDict::~SharedDict() {
  for (size_t i = 0; i < shard_count_; ++i) {
    Shard& s = shards_[i];
    Node* dead = nullptr;
    while (s.tail) {
      Node* n = s.tail;
      s.remove(n);
      n->hnext = dead;
      dead = n;
    }
    free_nodes(dead);
  }
}

uint64_t SharedDict::hash(std::string_view key) const { return siphash13(seed_, key); }

SharedDict::Shard& SharedDict::shard_of(uint64_t h) const {
  // The bucket uses the low bits; the shard takes high ones.
  return shards_[(h >> 40) & (shard_count_ - 1)];
}

void SharedDict::refresh(Shard& s, Node* n, int64_t now_ms, Callback cb, void* ctx) {
  s.touch(n);
  const int64_t before = n->slot.expire_ms;
  const bool fresh = before != 0 && now_ms >= before;
  if (fresh) n->slot = Slot{};
  cb(ctx, n->slot, fresh);
  s.heap_update(n, before);
}

bool SharedDict::update_impl(std::string_view key, int64_t now_ms, Callback cb, void* ctx) {
  const uint64_t h = hash(key);
  Shard& s = shard_of(h);
  {
    std::lock_guard lk(s.mu);
    if (Node* n = s.find(h, key)) {
      refresh(s, n, now_ms, cb, ctx);
      return true;
    }
  }
  // A new key: allocate its node before taking the lock again.
  const uint64_t need = charge(key.size());
  if (need > s.budget) {
    std::lock_guard lk(s.mu);
    ++s.no_memory;
    return false;
  }
  Node* fresh_node = new_node(key, h);
  Node* dead = nullptr;
  {
    std::lock_guard lk(s.mu);
    if (Node* n = s.find(h, key)) {  // another worker added it meanwhile
      refresh(s, n, now_ms, cb, ctx);
      dead = fresh_node;
    } else {
      s.make_room(need, now_ms, dead);
      s.insert(fresh_node);
      cb(ctx, fresh_node->slot, true);
      s.heap_update(fresh_node, 0);
    }
  }
  free_nodes(dead);
  return true;
}

bool SharedDict::update_existing_impl(std::string_view key, int64_t now_ms, Callback cb, void* ctx) {
  const uint64_t h = hash(key);
  Shard& s = shard_of(h);
  std::lock_guard lk(s.mu);
  Node* n = s.find(h, key);
  if (!n) return false;
  refresh(s, n, now_ms, cb, ctx);
  return true;
}

bool SharedDict::erase(std::string_view key) {
  const uint64_t h = hash(key);
  Shard& s = shard_of(h);
  Node* n;
  {
    std::lock_guard lk(s.mu);
    n = s.find(h, key);
    if (!n) return false;
    s.remove(n);
  }
  free_nodes(n);
  return true;
}

SharedDict::Stats SharedDict::stats() const {
  Stats st;
  st.capacity = capacity_;
  for (size_t i = 0; i < shard_count_; ++i) {
    Shard& s = shards_[i];
    std::lock_guard lk(s.mu);
    st.used += s.used;
    st.entries += s.entries;
    st.evicted_expired += s.evicted_expired;
    st.evicted_unexpired += s.evicted_unexpired;
    st.no_memory += s.no_memory;
  }
  return st;
}

// --- the process's dicts ---

namespace {

// APISIX's default size of the dicts Holdfast uses (apisix/cli/config.lua).
constexpr uint64_t kDefaultSize = 10 * 1024 * 1024;

struct Registry {
  std::mutex mu;
  std::map<std::string, uint64_t> sizes;
  std::map<std::string, std::unique_ptr<SharedDict>, std::less<>> dicts;
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

void configure_shared_dicts(const std::map<std::string, uint64_t>& sizes) {
  Registry& r = registry();
  std::lock_guard lk(r.mu);
  r.sizes = sizes;
}

SharedDict& shared_dict(const std::string& name) {
  Registry& r = registry();
  std::lock_guard lk(r.mu);
  auto it = r.dicts.find(name);
  if (it != r.dicts.end()) return *it->second;
  auto sz = r.sizes.find(name);
  auto d = std::make_unique<SharedDict>(name, sz != r.sizes.end() ? sz->second : kDefaultSize);
  return *r.dicts.emplace(name, std::move(d)).first->second;
}

std::vector<std::pair<std::string, SharedDict::Stats>> shared_dict_stats() {
  std::vector<std::pair<std::string, SharedDict::Stats>> out;
  Registry& r = registry();
  std::lock_guard lk(r.mu);
  for (const auto& [name, d] : r.dicts) out.emplace_back(name, d->stats());
  return out;
}

std::string shared_dicts_prometheus() {
  std::vector<SharedDict::Stats> stats;
  std::vector<std::string> names;
  for (auto& [name, s] : shared_dict_stats()) {
    names.push_back(name);
    stats.push_back(s);
  }
  if (names.empty()) return {};
  std::string out;
  auto family = [&](const char* metric, const char* type, const char* help, auto value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", metric, help, metric, type);
    for (size_t i = 0; i < names.size(); ++i)
      out += fmt::format("{}{{dict=\"{}\"}} {}\n", metric, names[i], value(stats[i]));
  };
  family("holdfast_shared_dict_capacity_bytes", "gauge",
         "Configured size of the store (nginx_config.http.lua_shared_dict)",
         [](const auto& s) { return s.capacity; });
  family("holdfast_shared_dict_used_bytes", "gauge", "Bytes charged by live entries, keys included",
         [](const auto& s) { return s.used; });
  family("holdfast_shared_dict_entries", "gauge", "Entries in the store", [](const auto& s) { return s.entries; });
  out += "# HELP holdfast_shared_dict_evictions_total Entries evicted to make room; reason=\"unexpired\" ones were "
         "still counting, so each reset a limit\n# TYPE holdfast_shared_dict_evictions_total counter\n";
  for (size_t i = 0; i < names.size(); ++i) {
    out += fmt::format("holdfast_shared_dict_evictions_total{{dict=\"{}\",reason=\"expired\"}} {}\n", names[i],
                       stats[i].evicted_expired);
    out += fmt::format("holdfast_shared_dict_evictions_total{{dict=\"{}\",reason=\"unexpired\"}} {}\n", names[i],
                       stats[i].evicted_unexpired);
  }
  family("holdfast_shared_dict_no_memory_total", "counter", "Entries too large for the store, never stored",
         [](const auto& s) { return s.no_memory; });
  return out;
}

}  // namespace holdfast::plugins
