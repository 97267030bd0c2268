// Decides where the configuration comes from: etcd when it answers; when it
// does not (at start-up within etcd.startup_timeout, or later), the newest
// valid snapshot — local last-known-good cache first, then S3 — polled every
// fallback interval until etcd returns. A backup node (mode: write) exports
// what it gets from etcd. `config_provider: json` + fallback makes S3 the
// primary source. Control thread only.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>

#include <memory>
#include <string>

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
  const Metrics& metrics() const { return metrics_; }
  int64_t applied_revision() const { return applied_revision_; }
  // Prometheus text for /metrics.
  std::string prometheus(const std::string& source, int64_t snapshot_age_seconds) const;

 private:
  // `stored` is the document as kept in etcd/S3 (fields may be encrypted).
  bool apply_stored(boost::json::object stored, const std::vector<std::string>& keyring, const std::string& source,
                    int64_t revision, bool strict);
  bool apply_cache();
  boost::asio::awaitable<void> startup_fallback();
  boost::asio::awaitable<void> poll_loop();
  void start_polling();

  boost::asio::io_context& io_;
  const NodeConfig& cfg_;
  Manager& mgr_;
  Metrics metrics_;
  std::unique_ptr<EtcdSource> etcd_;
  std::unique_ptr<BackupExporter> exporter_;
  std::unique_ptr<SnapshotReader> reader_;
  boost::asio::steady_timer startup_timer_;
  boost::asio::steady_timer poll_timer_;
  int64_t applied_revision_ = 0;
  bool polling_ = false;
  bool stopped_ = false;
  bool s3_primary_ = false;
};

}  // namespace holdfast::config::fallback
