// Keyed per-client state of the rate-limiting plugins (limit-count,
// limit-req and limit-conn): one store per APISIX `lua_shared_dict`
// name, shared by every route and worker for the life of the process and
// bounded in bytes like nginx's shared memory zone, so that clients choosing
// keys cannot grow the process.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace holdfast::plugins {

class SharedDict {
 public:
  // What a plugin keeps per key: two numbers and an optional expiry.
  struct Slot {
    int64_t n[2] = {0, 0};
    int64_t expire_ms = 0;  // 0 = never; otherwise a time on the caller's clock
  };

  struct Stats {
    uint64_t capacity = 0;           // bytes, as configured
    uint64_t used = 0;               // bytes charged by live entries (key + per-entry overhead)
    uint64_t entries = 0;
    uint64_t evicted_expired = 0;    // reclaimed for room after their expiry
    uint64_t evicted_unexpired = 0;  // pushed out while still counting: each one resets a limit
    uint64_t no_memory = 0;          // entries too large to store at all
  };

  // Bytes one entry is charged: its key plus 72 (the node with its slot and
  // links, and its place in the expiry index), rounded up to 16. The hash
  // buckets (8 bytes per 128 of capacity) are taken from the capacity up front.
  static size_t charge(size_t key_len);

  SharedDict(std::string name, uint64_t capacity_bytes);
  ~SharedDict();
  SharedDict(const SharedDict&) = delete;
  SharedDict& operator=(const SharedDict&) = delete;

  // Runs fn(Slot&, bool fresh) on the slot of `key` under its shard's lock.
  // A key that is absent, or expired at now_ms, gets a zeroed slot and
  // fresh = true. Making room evicts expired entries first, then the least
  // recently used. fn must be short: no allocation, no call back into the dict.
  // Returns false (and fn is not called) when the entry cannot be stored at
  // all: its key alone is larger than a shard.
  template <class Fn>
  bool update(std::string_view key, int64_t now_ms, Fn&& fn) {
    using F = std::remove_reference_t<Fn>;
    return update_impl(key, now_ms, [](void* f, Slot& s, bool fresh) { (*static_cast<F*>(f))(s, fresh); },
                       const_cast<void*>(static_cast<const void*>(&fn)));
  }

  // As update, for a key that is present only (expired or not): false, and
  // fn is not called, when it is absent. Never allocates, so it may run
  // where an allocation failure could not be handled (limit-conn's leaving,
  // from a destructor).
  template <class Fn>
  bool update_existing(std::string_view key, int64_t now_ms, Fn&& fn) {
    using F = std::remove_reference_t<Fn>;
    return update_existing_impl(key, now_ms,
                                [](void* f, Slot& s, bool fresh) { (*static_cast<F*>(f))(s, fresh); },
                                const_cast<void*>(static_cast<const void*>(&fn)));
  }

  // Removes `key`; false when it was not there.
  bool erase(std::string_view key);

  const std::string& name() const { return name_; }
  uint64_t capacity() const { return capacity_; }
  Stats stats() const;

 private:
  struct Node;
  struct Shard;
  using Callback = void (*)(void*, Slot&, bool);

  bool update_impl(std::string_view key, int64_t now_ms, Callback cb, void* ctx);
  bool update_existing_impl(std::string_view key, int64_t now_ms, Callback cb, void* ctx);
  // Runs `cb` on an existing node (under its shard's lock): an expired value
  // starts afresh, and the node is marked used and re-filed by expiry.
  static void refresh(Shard& s, Node* n, int64_t now_ms, Callback cb, void* ctx);
  static Node* new_node(std::string_view key, uint64_t h);
  static void free_nodes(Node* chain);
  uint64_t hash(std::string_view key) const;
  Shard& shard_of(uint64_t h) const;

  std::string name_;
  uint64_t capacity_;
  uint64_t seed_[2];  // per-process random key of the hash, so clients cannot aim at one bucket
  size_t shard_count_;
  std::unique_ptr<Shard[]> shards_;
};

// The stores of this process, by dict name, sized from config.yaml's
// `nginx_config.http.lua_shared_dict` (bytes). Called once at start-up,
// before any plugin asks for a dict; a dict created earlier keeps its size.
void configure_shared_dicts(const std::map<std::string, uint64_t>& sizes);

// The store for `name` (created on first use with its configured size, or
// APISIX's default of 10m); it lives until the process exits, so counters
// survive configuration reloads. Plugins look it up when they are built,
// never per request.
SharedDict& shared_dict(const std::string& name);

// Every store created so far, by name, with its figures.
std::vector<std::pair<std::string, SharedDict::Stats>> shared_dict_stats();

// Prometheus text for every store created so far (status endpoint /metrics).
std::string shared_dicts_prometheus();

}  // namespace holdfast::plugins
