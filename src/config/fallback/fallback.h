// The fallback control plane (issue 4): the backup exporter (write mode)
// and the snapshot reader (traffic nodes), one of each per store, plus the
// local last-known-good cache. All on the control thread. The snapshot rules themselves live in
// snapshot_store.h; here are the rounds, the logs and the metrics.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>

#include <atomic>
#include <cctype>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "config/fallback/snapshot_format.h"
#include "config/fallback/snapshot_store.h"
#include "core/config.h"

namespace holdfast::config::fallback {

// Counters of one store for /metrics and /status: a backup node's exports
// to it, or a traffic node's reads from it.
// A failure reason as a metric label. Some reasons are a store's own error
// code (S3's <Code>, Azure's x-ms-error-code), i.e. text from the network:
// only [A-Za-z0-9_.-] stays (a quote or newline would forge /metrics lines),
// at most 64 characters, and past 32 distinct reasons the rest count as
// "other", so a hostile store cannot grow the series without bound.
inline void count_failure(std::map<std::string, uint64_t>& failures, const std::string& reason) {
  std::string r;
  for (char c : reason.substr(0, 64))
    r += (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-') ? c : '_';
  if (r.empty()) r = "other";
  if (!failures.count(r) && failures.size() >= 32) r = "other";
  ++failures[r];
}

struct StoreMetrics {
  int64_t last_export_unix = 0;
  int64_t last_export_revision = 0;
  double last_export_seconds = 0;
  uint64_t last_export_bytes = 0;
  uint64_t exports = 0, uploads_skipped = 0;
  int64_t last_import_unix = 0;       // applied from this store
  double last_import_seconds = 0;
  uint64_t last_import_bytes = 0;
  int64_t store_revision = 0;         // of the last valid snapshot read from it (0: none yet)
  uint64_t rounds = 0;                // backup rounds or polls finished
  std::string last_error;             // of the last round; empty when it worked
  bool ok() const { return rounds > 0 && last_error.empty(); }  // its last round worked
  std::map<std::string, uint64_t> failures;  // reason -> count
  void fail(const std::string& reason) { count_failure(failures, reason); }
};

// What is not one store's: the snapshot in use, and the cache's failures.
struct Metrics {
  int64_t snapshot_revision = 0;       // of the snapshot in use (a store or the cache)
  int64_t snapshot_created_at = 0;
  std::map<std::string, uint64_t> failures;  // reason -> count
  void fail(const std::string& reason) { count_failure(failures, reason); }
};

// A snapshot in the local cache file (written atomically after every
// applied configuration).
struct CacheEntry {
  boost::json::object resources;       // stored form
  std::vector<std::string> keyring;
  int64_t revision = 0;
  int64_t created_at = 0;
  std::string source;
};
Status write_cache(const std::string& path, const CacheEntry& e);
Result<CacheEntry> read_cache(const std::string& path);

// The wait before the next backup round or store poll. Refused credentials
// need an operator (a new key or token, a fixed clock), so after the first
// refused round the wait doubles each round, up to 8 intervals but at most
// 5 minutes (and never below one interval); any other outcome resets it.
double retry_delay(double interval, int refused_rounds);

// Exports to one store, in its own loop with its own back-off, so that a
// store that fails or hangs never delays the others.
class BackupExporter {
 public:
  BackupExporter(boost::asio::io_context& io, const NodeConfig& cfg, Store store);
  // The stored (still encrypted) document and revision after each etcd apply.
  void update(boost::json::object stored_doc, int64_t revision);
  void start();   // first export right after the first update, then every interval
  void stop();
  const Store& store() const { return store_; }
  const StoreMetrics& metrics() const { return metrics_; }
  int refused_rounds() const { return refused_rounds_; }

 private:
  boost::asio::awaitable<void> loop();
  boost::asio::awaitable<void> export_once();
  boost::asio::io_context& io_;
  const NodeConfig& cfg_;
  StoreMetrics metrics_;
  Store store_;
  SnapshotWriter writer_;
  boost::json::object doc_;
  int64_t revision_ = 0;
  bool have_doc_ = false;
  bool stopped_ = false;
  int refused_rounds_ = 0;  // consecutive rounds whose credentials the store refused
  boost::asio::steady_timer timer_;
};

// Fetches and verifies snapshots from one store, and offers each valid one
// to the supervisor, which decides whether it is newer than what it serves.
class SnapshotReader {
 public:
  enum class Offer { applied, not_newer, rejected };
  using OfferFn = std::function<Offer(const Loaded& snap, const SnapshotReader& from)>;
  SnapshotReader(boost::asio::io_context& io, const NodeConfig& cfg, Store store, int rank, OfferFn offer);
  // One round: fetch and verify the store's snapshot, then offer it.
  boost::asio::awaitable<void> poll_once();
  const Store& store() const { return store_; }
  const StoreMetrics& metrics() const { return metrics_; }
  int rank() const { return rank_; }  // the store's place in the config: ties go to the lower
  int refused_rounds() const { return refused_rounds_; }
  // The supervisor's poll loop for this store.
  boost::asio::steady_timer& timer() { return timer_; }
  bool polling = false;

 private:
  boost::asio::io_context& io_;
  const NodeConfig& cfg_;
  StoreMetrics metrics_;
  OfferFn offer_;
  Store store_;
  int rank_;
  std::string last_rejected_;
  int refused_rounds_ = 0;
  boost::asio::steady_timer timer_;
};

std::string hostname();

}  // namespace holdfast::config::fallback
