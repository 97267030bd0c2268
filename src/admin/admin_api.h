// The APISIX-compatible Admin API (APISIX_COMPAT §5) for the traditional and
// control_plane roles: validates resources and stores them in etcd.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <memory>

#include "config/etcd/etcd_client.h"
#include "core/config.h"
#include "http/control_server.h"

namespace holdfast::admin {

class AdminApi {
 public:
  AdminApi(const NodeConfig& cfg, config::EtcdClient& etcd);
  ~AdminApi();
  boost::asio::awaitable<http::ControlResponse> handle(const http::ControlRequest& req);
  // Stores config.yaml's enabled plugin list at <prefix>/plugins, retrying
  // until etcd answers (APISIX does this when an Admin node starts).
  boost::asio::awaitable<void> publish_plugins_at_start();
  // Shutdown: publish_plugins_at_start() retries no more. (Cancelling the
  // etcd request in flight is the EtcdClient's cancel().)
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool stopped_ = false;
  boost::asio::steady_timer* retry_timer_ = nullptr;  // while publish_plugins_at_start() waits
};

}  // namespace holdfast::admin
