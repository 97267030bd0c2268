// Decides where the configuration comes from: etcd when it answers; when it
// does not (at start-up within etcd.startup_timeout, or later), the newest
// valid snapshot — local last-known-good cache first, then every configured
// store at once, each polled every fallback interval until etcd returns. A
// backup node (mode: write) exports what it gets from etcd to every store.
// `config_provider: json` + fallback makes the stores the primary source.
// Control thread only.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>

#include <memory>
#include <string>
#include <vector>

#include "config/etcd/etcd_source.h"
#include "config/fallback/fallback.h"
#include "config/manager.h"
#include "core/config.h"

namespace holdfast::config::fallback {

class Supervisor {
 public:
  Supervisor(boost::asio::io_context& io, const NodeConfig& cfg, Manager& mgr);
  ~Supervisor();
  void start();
  void stop();
  EtcdSource* etcd() { return etcd_.get(); }
  const EtcdSource* etcd() const { return etcd_.get(); }
  const Metrics& metrics() const { return metrics_; }
  int64_t applied_revision() const { return applied_revision_; }
  // Prometheus text for /metrics.
  std::string prometheus(const std::string& source, int64_t snapshot_age_seconds) const;
  // /status "stores": each store's revision, last success and last error, by its key.
  boost::json::object stores_status() const;

 private:
  // `stored` is the document as kept in etcd/S3 (fields may be encrypted).
  bool apply_stored(boost::json::object stored, const std::vector<std::string>& keyring, const std::string& source,
                    int64_t revision, bool strict);
  bool apply_cache();
  SnapshotReader::Offer offer(const Loaded& snap, const SnapshotReader& from);
  boost::asio::awaitable<void> poll_loop(SnapshotReader& reader);
  void start_polling();
  bool etcd_back() const;

  boost::asio::io_context& io_;
  const NodeConfig& cfg_;
  Manager& mgr_;
  Metrics metrics_;
  std::unique_ptr<EtcdSource> etcd_;
  std::vector<std::unique_ptr<BackupExporter>> exporters_;  // one per store (write mode)
  std::vector<std::unique_ptr<SnapshotReader>> readers_;    // one per store, in config order (traffic nodes)
  boost::asio::steady_timer startup_timer_;
  int64_t applied_revision_ = 0;
  int applied_rank_ = -1;  // the config order of the store that served the configuration; -1: etcd, cache, file
  bool stopped_ = false;
  bool s3_primary_ = false;
};

}  // namespace holdfast::config::fallback
