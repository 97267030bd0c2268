// The fallback control plane (issue 4): the backup exporter (write mode)
// and the snapshot reader (traffic nodes), plus the local last-known-good
// cache. All on the control thread. The snapshot rules themselves live in
// snapshot_store.h; here are the rounds, the logs and the metrics.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "config/fallback/snapshot_format.h"
#include "config/fallback/snapshot_store.h"
#include "core/config.h"

namespace holdfast::config::fallback {

// Counters for /metrics (Prometheus text) and the status endpoint.
struct Metrics {
  int64_t last_export_unix = 0;
  int64_t last_export_revision = 0;
  double last_export_seconds = 0;
  uint64_t last_export_bytes = 0;
  uint64_t exports = 0, uploads_skipped = 0;
  int64_t last_import_unix = 0;
  double last_import_seconds = 0;
  uint64_t last_import_bytes = 0;
  int64_t snapshot_revision = 0;       // of the snapshot in use (s3/cache)
  int64_t snapshot_created_at = 0;
  std::map<std::string, uint64_t> failures;  // reason -> count
  void fail(const std::string& reason) { ++failures[reason]; }
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

class BackupExporter {
 public:
  BackupExporter(boost::asio::io_context& io, const NodeConfig& cfg, Metrics& metrics);
  // The stored (still encrypted) document and revision after each etcd apply.
  void update(boost::json::object stored_doc, int64_t revision);
  void start();   // first export right after the first update, then every interval
  void stop();
  const Store& store() const { return store_; }
  int refused_rounds() const { return refused_rounds_; }

 private:
  boost::asio::awaitable<void> loop();
  boost::asio::awaitable<void> export_once();
  boost::asio::io_context& io_;
  const NodeConfig& cfg_;
  Metrics& metrics_;
  Store store_;
  SnapshotWriter writer_;
  boost::json::object doc_;
  int64_t revision_ = 0;
  bool have_doc_ = false;
  bool stopped_ = false;
  std::string last_error_;
  int refused_rounds_ = 0;  // consecutive rounds whose credentials the store refused
  boost::asio::steady_timer timer_;
};

// Fetches, verifies and hands over snapshots from the store.
class SnapshotReader {
 public:
  using Apply = std::function<bool(const Loaded& snap, const std::string& source)>;
  SnapshotReader(boost::asio::io_context& io, const NodeConfig& cfg, Metrics& metrics, Apply apply);
  // One round: read the manifest; when it names a revision newer than
  // `min_revision`, fetch, verify and apply. Returns the applied revision (0 if none).
  boost::asio::awaitable<int64_t> poll_once(int64_t min_revision);
  Store& store() { return store_; }
  const Store& store() const { return store_; }
  int refused_rounds() const { return refused_rounds_; }

 private:
  boost::asio::io_context& io_;
  const NodeConfig& cfg_;
  Metrics& metrics_;
  Apply apply_;
  Store store_;
  std::string last_error_;
  std::string last_rejected_;
  int refused_rounds_ = 0;
};

std::string hostname();

}  // namespace holdfast::config::fallback
