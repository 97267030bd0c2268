// HttpClient against a real socket whose peer misbehaves: the bounds on what
// one response may make the client hold (http/client.h).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <functional>
#include <string>
#include <thread>

#include "http/client.h"

namespace {

using holdfast::http::HttpClient;
using holdfast::http::Url;

// Accepts one connection, reads the request head, then runs `answer` with the
// socket (which writes until the client goes away, for the endless cases).
class OneShotServer {
 public:
  explicit OneShotServer(std::function<void(int)> answer) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd_, 1);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this, answer = std::move(answer)] {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string req;
      char buf[4096];
      while (req.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      answer(c);
      ::close(c);
    });
  }
  ~OneShotServer() {
    thread_.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }

  // Writes `s`; false once the client has gone.
  static bool send_all(int c, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t n = ::send(c, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }
  // Writes `head` then `piece` over and over until the client goes away;
  // returns how many bytes went out.
  static size_t send_forever(int c, const std::string& head, const std::string& piece) {
    size_t sent = head.size();
    if (!send_all(c, head)) return 0;
    while (send_all(c, piece)) sent += piece.size();
    return sent;
  }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
};

holdfast::Result<holdfast::http::ClientResponse> get(uint16_t port, size_t max_body = 0) {
  boost::asio::io_context io;
  auto url = Url::parse("http://127.0.0.1:" + std::to_string(port));
  HttpClient client(io.get_executor(), *url);
  if (max_body) client.set_max_response_body(max_body);
  holdfast::Result<holdfast::http::ClientResponse> out = holdfast::Error{"not run"};
  boost::asio::co_spawn(
      io, [&]() -> boost::asio::awaitable<void> { out = co_await client.request("GET", "/o", {}, "", 10); },
      boost::asio::detached);
  io.run();
  return out;
}

TEST(HttpClientBounds, BodyWithinTheLimitIsReturned) {
  OneShotServer s([](int c) { OneShotServer::send_all(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"); });
  auto r = get(s.port(), 1000);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello");
}

TEST(HttpClientBounds, ContentLengthOverTheLimitIsRefusedBeforeReading) {
  OneShotServer s([&](int c) {
    OneShotServer::send_forever(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n", std::string(4096, 'x'));
  });
  auto r = get(s.port(), 1000);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("100000000 bytes is over the limit of 1000"), std::string::npos) << r.error();
}

TEST(HttpClientBounds, EndlessChunkedBodyStopsAtTheLimit) {
  OneShotServer s([&](int c) {
    OneShotServer::send_forever(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                                       "1000\r\n" + std::string(4096, 'x') + "\r\n");
  });
  auto r = get(s.port(), 1 << 20);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("over the limit of 1048576 bytes"), std::string::npos) << r.error();
}

TEST(HttpClientBounds, EndlessBodyUntilCloseStopsAtTheLimit) {
  OneShotServer s([&](int c) { OneShotServer::send_forever(c, "HTTP/1.1 200 OK\r\n\r\n", std::string(8192, 'y')); });
  auto r = get(s.port(), 1 << 20);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("over the limit"), std::string::npos) << r.error();
}

TEST(HttpClientBounds, EndlessHeadIsRefused) {
  // One header line that never ends: without a bound the buffer grows until
  // the deadline, re-parsed from the start on every read.
  OneShotServer s([&](int c) { OneShotServer::send_forever(c, "HTTP/1.1 200 OK\r\nX-Long: ", std::string(4096, 'z')); });
  auto r = get(s.port());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("response head over 65536 bytes"), std::string::npos) << r.error();
}

}  // namespace
