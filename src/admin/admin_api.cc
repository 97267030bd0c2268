#include "admin/admin_api.h"

namespace holdfast::admin {

struct AdminApi::Impl {
  const NodeConfig& cfg;
  config::EtcdClient& etcd;
};

AdminApi::AdminApi(const NodeConfig& cfg, config::EtcdClient& etcd) : impl_(new Impl{cfg, etcd}) {}
AdminApi::~AdminApi() = default;

boost::asio::awaitable<http::ControlResponse> AdminApi::handle(const http::ControlRequest& req) {
  http::ControlResponse r;
  r.status = 501;
  r.body = "{\"error_msg\":\"not implemented yet\"}\n";
  co_return r;
}

}  // namespace holdfast::admin
