// A small HTTP/1.1 server for the control thread: the status endpoint and
// the Admin API. Bodies are read whole (bounded); handlers are coroutines
// that may call etcd. Not for proxy traffic.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/config.h"

namespace holdfast::http {

struct ControlRequest {
  std::string method;
  std::string path;    // decoded path, no query
  std::string query;   // raw query string
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string remote_addr;
  std::string header(std::string_view name) const;
  std::string arg(std::string_view name) const;  // decoded query argument
};

struct ControlResponse {
  int status = 200;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers{{"Content-Type", "application/json"}};
};

using ControlHandler = std::function<boost::asio::awaitable<ControlResponse>(const ControlRequest&)>;

class ControlServer {
 public:
  ControlServer(boost::asio::io_context& io, std::string name, ControlHandler handler, size_t max_body = 1536 * 1024);
  // Throws on bind failure (start-up error).
  void listen(const ListenAddr& addr);
  uint16_t port() const;
  void start();
  // Closes the listener and every open connection; each connection's
  // coroutine then ends, so nothing of this server is pending on the
  // io_context (the control thread's run() returns on its own at exit).
  void stop();

 private:
  boost::asio::awaitable<void> accept_loop();
  boost::asio::awaitable<void> serve(boost::asio::ip::tcp::socket sock);
  boost::asio::io_context& io_;
  std::string name_;
  ControlHandler handler_;
  size_t max_body_;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
  std::unordered_set<boost::asio::ip::tcp::socket*> conns_;  // open connections, for stop()
  bool stopped_ = false;
};

std::string url_decode(std::string_view s);

}  // namespace holdfast::http
