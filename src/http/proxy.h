// The downstream connection: reads requests, runs the plugin phases, picks
// an upstream node and streams the exchange. One coroutine per connection.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <vector>

namespace holdfast::http {

class Worker;

// A socket with a deadline; the worker's sweeper cancels it when it passes.
struct Timed {
  boost::asio::ip::tcp::socket* sock = nullptr;
  int64_t deadline = 0;   // ms since steady epoch; 0 = none
  bool fired = false;
  bool idle = false;      // waiting for a request: cancelled on drain
  bool reusable = false;  // idle after a response (keep-alive, lingering): shed at limits
  bool tunnel = false;    // an upgraded connection: cancelled on drain
  Timed* prev = nullptr;
  Timed* next = nullptr;
};

// A byte buffer with a window [begin, end) of unread data.
struct Buf {
  std::vector<char> data;
  size_t begin = 0, end = 0;
  size_t avail() const { return end - begin; }
  void compact();
};

struct UpstreamConn {
  explicit UpstreamConn(boost::asio::io_context& io) : sock(io) {}
  boost::asio::ip::tcp::socket sock;
  Buf buf;
  Timed timed;
  int requests = 0;
  int64_t idle_since = 0;
  int64_t idle_timeout_ms = 60000;
};

boost::asio::awaitable<void> serve_connection(Worker& w, boost::asio::ip::tcp::socket sock);

}  // namespace holdfast::http
