// Performs plugins' side requests (plugins/side_request.h) on a worker, with
// the upstream connection machinery (UpstreamConn, the worker's deadline
// sweeper and connection pool, the HTTP codec): awaited ones for
// Action::call, detached ones (proxy-mirror) as their own coroutines.
#pragma once
#include <boost/asio/awaitable.hpp>

#include <memory>
#include <string>

#include "plugins/side_request.h"

namespace holdfast::proxy {

class Worker;

// Sends `r` and reads its answer within r.timeout; never throws. `r.body` is
// sent as it is (with_client_body is the caller's to resolve first).
boost::asio::awaitable<plugins::SideResponse> side_exchange(Worker& w, const plugins::SideRequest& r);

// Detached side requests (proxy-mirror) in flight on one worker at most;
// beyond it a copy is dropped and counted.
constexpr int kMaxDetachedPerWorker = 64;

// Starts `r` as its own coroutine on the worker's io_context and returns at
// once; the request that asked for it never waits. Counts the outcome.
void side_launch(Worker& w, std::shared_ptr<plugins::SideRequest> r);

// proxy-mirror's copies that were not sent because the client's body was
// larger than the mirror's bound (the pipeline decides that).
void count_mirror_body_too_large();

// holdfast_proxy_mirror_* counters, for the metrics pages.
std::string side_requests_prometheus();

}  // namespace holdfast::proxy
