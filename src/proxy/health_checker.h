// Active health checks (APISIX `checks.active`): probes every node of the
// upstreams that ask for it, from the control thread, and flips the node
// health that the workers' balancers read. Passive checks live in the proxy.
#pragma once
#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <memory>

#include "snapshot/snapshot.h"

namespace holdfast::proxy {

class HealthChecker {
 public:
  explicit HealthChecker(boost::asio::io_context& io);
  // Restarts probing for the upstreams of a newly published snapshot.
  void update(std::shared_ptr<const snapshot::Snapshot> snap);
  // Ends every probe loop now (shutdown): waits between probes and probes
  // in flight are cancelled, so no coroutine of the checker stays pending.
  void stop();
  struct Live;  // what the running loops wait on, for stop()

 private:
  boost::asio::io_context& io_;
  std::shared_ptr<uint64_t> generation_ = std::make_shared<uint64_t>(0);
  std::shared_ptr<Live> live_;
  bool stopped_ = false;
};

}  // namespace holdfast::proxy
