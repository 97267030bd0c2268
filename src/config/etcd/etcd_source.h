// Configuration from etcd: a full load at a revision, then a watch from the
// next revision; compaction or a broken stream leads to a full reload.
// Bursts of changes are coalesced into one snapshot. Control thread only.
#pragma once
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/value.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "config/etcd/etcd_client.h"
#include "core/config.h"
#include "core/status.h"

namespace holdfast::config {

class EtcdSource {
 public:
  // Takes ownership of the document (it is rebuilt for every change).
  using Apply = std::function<Status(boost::json::value doc, const std::string& revision)>;
  EtcdSource(boost::asio::io_context& io, const EtcdConfig& cfg, Apply apply);
  ~EtcdSource();

  void start();
  void stop();
  bool reachable() const { return reachable_; }
  bool loaded() const { return loaded_; }
  int64_t revision() const { return revision_; }
  // Called on the control thread when etcd becomes reachable or unreachable.
  std::function<void(bool reachable)> on_reachability;
  static EtcdOptions options_from(const EtcdConfig& cfg);

 private:
  boost::asio::awaitable<void> run();
  boost::asio::awaitable<bool> full_load();
  void mark_dirty();
  void flush();
  void set_reachable(bool r, const std::string& why);

  boost::asio::io_context& io_;
  EtcdConfig cfg_;
  Apply apply_;
  std::unique_ptr<EtcdClient> client_;
  std::map<std::string, boost::json::value> kv_;  // parsed once, when each value arrives
  int64_t revision_ = 0;
  bool reachable_ = false;
  bool reported_ = false;   // reachability was logged at least once
  bool loaded_ = false;
  bool stopped_ = false;
  bool dirty_ = false;
  bool flush_pending_ = false;
  boost::asio::steady_timer flush_timer_;
  boost::asio::steady_timer retry_timer_;
};

}  // namespace holdfast::config
