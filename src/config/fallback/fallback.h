// The fallback control plane (issue 4): the backup exporter (write mode)
// and the snapshot reader (traffic nodes), plus the local last-known-good
// cache. All on the control thread.
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

#include "cloud/aws/s3_client.h"
#include "config/fallback/snapshot_format.h"
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

std::shared_ptr<aws::S3Client> make_s3(boost::asio::io_context& io, const FallbackConfig& f);

class BackupExporter {
 public:
  BackupExporter(boost::asio::io_context& io, const NodeConfig& cfg, Metrics& metrics);
  // The stored (still encrypted) document and revision after each etcd apply.
  void update(boost::json::object stored_doc, int64_t revision);
  void start();   // first export right after the first update, then every interval
  void stop();
  const aws::S3Client& s3() const { return *s3_; }

 private:
  boost::asio::awaitable<void> loop();
  boost::asio::awaitable<void> export_once();
  boost::asio::io_context& io_;
  const NodeConfig& cfg_;
  Metrics& metrics_;
  std::shared_ptr<aws::S3Client> s3_;
  boost::json::object doc_;
  int64_t revision_ = 0;
  bool have_doc_ = false;
  bool stopped_ = false;
  bool conditional_writes_ = true;
  int64_t last_upload_unix_ = 0;   // last time the data objects were uploaded
  std::string last_error_;
  boost::asio::steady_timer timer_;
};

// Fetches, verifies and hands over snapshots from S3.
class SnapshotReader {
 public:
  using Apply = std::function<bool(const Loaded& snap, const std::string& source)>;
  SnapshotReader(boost::asio::io_context& io, const NodeConfig& cfg, Metrics& metrics, Apply apply);
  // One round: read the manifest; when it names a revision newer than
  // `min_revision`, fetch, verify and apply. Returns the applied revision (0 if none).
  boost::asio::awaitable<int64_t> poll_once(int64_t min_revision);
  // Fetches and verifies the current snapshot without applying it.
  boost::asio::awaitable<Result<Loaded>> fetch();
  aws::S3Client& s3() { return *s3_; }
  const aws::S3Client& s3() const { return *s3_; }

 private:
  boost::asio::io_context& io_;
  const NodeConfig& cfg_;
  Metrics& metrics_;
  Apply apply_;
  std::shared_ptr<aws::S3Client> s3_;
  std::string last_error_;
  std::string last_rejected_;
};

std::string hostname();

}  // namespace holdfast::config::fallback
