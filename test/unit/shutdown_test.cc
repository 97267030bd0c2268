// Shutdown of the control thread's components: after stop(), nothing of
// theirs is left pending, so the io_context's run() returns on its own and no
// coroutine frame outlives the object it refers to (src/main.cc's sequence).
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>
#include <chrono>

#include "snapshot/snapshot.h"
#include "http/control_server.h"
#include "proxy/health_checker.h"

using namespace holdfast;
namespace asio = boost::asio;
namespace json = boost::json;
using tcp = asio::ip::tcp;

namespace {

// Runs `io` until it has no work left, at most `limit` (a hang is the failure).
bool runs_out(asio::io_context& io, std::chrono::seconds limit = std::chrono::seconds(10)) {
  io.run_for(limit);
  return io.stopped();
}

}  // namespace

TEST(Shutdown, ControlServerStopClosesOpenKeepAliveConnections) {
  asio::io_context io;
  http::ControlServer server(io, "test", [](const http::ControlRequest&) -> asio::awaitable<http::ControlResponse> {
    co_return http::ControlResponse{};
  });
  server.listen(ListenAddr{"127.0.0.1", 0});
  server.start();
  // A client that made one keep-alive request and keeps the connection open:
  // the server's coroutine waits for its next request (60 s deadline).
  tcp::socket client(io);
  client.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server.port()));
  const std::string req = "GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
  asio::write(client, asio::buffer(req));
  std::string got(4096, '\0');
  size_t n = 0;
  client.async_read_some(asio::buffer(got), [&](boost::system::error_code, size_t k) {
    n = k;
    server.stop();  // the response arrived: the connection is now idle
  });
  EXPECT_TRUE(runs_out(io)) << "stop() left the idle keep-alive connection pending";
  EXPECT_EQ(got.substr(0, 15), "HTTP/1.1 200 OK");
  EXPECT_GT(n, 0u);
}

TEST(Shutdown, HealthCheckerStopEndsProbeLoops) {
  asio::io_context io;
  // A listener that accepts and never answers: each http probe waits for its
  // timeout, and the loop then waits its interval before the next one.
  tcp::acceptor silent(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto port = silent.local_endpoint().port();
  auto doc = json::parse(R"({"upstreams":[{"id":"u","nodes":{"127.0.0.1:)" + std::to_string(port) + R"(":1},
      "checks":{"active":{"http_path":"/h","timeout":30,"healthy":{"interval":300},"unhealthy":{"interval":300}}}}]})");
  auto snap = snapshot::compile_snapshot(doc, {});
  ASSERT_TRUE(snap.ok()) << snap.error();
  proxy::HealthChecker checker(io);
  checker.update(*snap);
  asio::steady_timer later(io);
  later.expires_after(std::chrono::milliseconds(200));  // a probe is in flight by then
  later.async_wait([&](boost::system::error_code) {
    checker.stop();
    silent.close();
  });
  EXPECT_TRUE(runs_out(io)) << "a probe loop was still pending after stop()";
}
