// The downstream HTTP/2 session on scripted connections: a request made by
// nghttp2's client side is served through the stream interface the pipeline
// uses, and arbitrary bytes after the preface never crash, hang or leak it
// (the sanitizer build runs these too).
#include "transport/h2_server.h"

#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <random>
#include <string>

using namespace holdfast::transport;
namespace asio = boost::asio;

namespace {

// A connection whose client bytes are given in advance; once they are read
// the client stays a moment (the session answers on the same io_context),
// then closes. What the session writes is kept.
class ScriptedStream final : public Stream {
 public:
  ScriptedStream(asio::io_context& io, std::string in) : timer_(io), in_(std::move(in)) {}
  asio::awaitable<Result> read_some(asio::mutable_buffer b) override {
    if (closed_) co_return Result{asio::error::bad_descriptor, 0};
    if (off_ == in_.size()) {
      timer_.expires_after(std::chrono::milliseconds(5));
      co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
      co_return Result{asio::error::eof, 0};
    }
    size_t n = std::min(b.size(), std::min<size_t>(in_.size() - off_, 700));  // odd splits
    std::memcpy(b.data(), in_.data() + off_, n);
    off_ += n;
    co_return Result{boost::system::error_code(), n};
  }
  asio::awaitable<Result> write(std::array<asio::const_buffer, 2> bufs) override {
    if (closed_) co_return Result{asio::error::broken_pipe, 0};
    size_t n = 0;
    for (auto& b : bufs) {
      out.append(static_cast<const char*>(b.data()), b.size());
      n += b.size();
    }
    co_return Result{boost::system::error_code(), n};
  }
  void cancel() override {}
  asio::awaitable<void> shutdown_send() override { co_return; }
  void close() override {
    closed_ = true;
    timer_.cancel();
  }
  bool is_open() const override { return !closed_; }
  std::string out;

 private:
  asio::steady_timer timer_;
  std::string in_;
  size_t off_ = 0;
  bool closed_ = false;
};

// What the pipeline does, in short: read the request whole, answer it.
asio::awaitable<void> answer(H2Stream& s, std::string* seen) {
  char buf[4096];
  std::string req;
  for (;;) {
    auto [ec, n] = co_await s.read_some(asio::buffer(buf));
    if (ec) break;
    req.append(buf, n);
    if (req.find("\r\n\r\n") != std::string::npos && req.find("Transfer-Encoding") == std::string::npos &&
        req.find("Content-Length") == std::string::npos)
      break;
    if (req.ends_with("0\r\n\r\n")) break;
  }
  if (seen) *seen += req;
  static constexpr std::string_view kResp =
      "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nx-t: 1\r\n\r\n";
  co_await s.write({asio::buffer(kResp), asio::const_buffer()});
  s.close();
}

std::string serve(const std::string& client_bytes, std::string* seen = nullptr) {
  asio::io_context io;
  ScriptedStream conn(io, client_bytes);
  H2Options opts;
  H2Hooks hooks;
  hooks.serve = [seen](H2Stream& s) { return answer(s, seen); };
  hooks.watch = [](Timed*) {};
  hooks.unwatch = [](Timed*) {};
  hooks.draining = [] { return false; };
  bool done = false;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    co_await serve_h2(io, conn, {}, opts, hooks);
    done = true;
  }, asio::detached);
  io.run();
  EXPECT_TRUE(done);
  return conn.out;
}

// Client bytes for one request, made by nghttp2's client side.
std::string client_request(bool with_body) {
  nghttp2_session_callbacks* cb;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session* c;
  nghttp2_session_client_new(&c, cb, nullptr);
  nghttp2_session_callbacks_del(cb);
  nghttp2_submit_settings(c, NGHTTP2_FLAG_NONE, nullptr, 0);
  nghttp2_nv nv[] = {
      {(uint8_t*)":method", (uint8_t*)"POST", 7, 4, 0}, {(uint8_t*)":path", (uint8_t*)"/p?q", 5, 4, 0},
      {(uint8_t*)":scheme", (uint8_t*)"http", 7, 4, 0}, {(uint8_t*)":authority", (uint8_t*)"a.test", 10, 6, 0},
      {(uint8_t*)"cookie", (uint8_t*)"a=1", 6, 3, 0},   {(uint8_t*)"cookie", (uint8_t*)"b=2", 6, 3, 0},
  };
  nghttp2_data_provider prd;
  prd.source.ptr = nullptr;
  prd.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t, uint32_t* flags, nghttp2_data_source*,
                         void*) -> ssize_t {
    std::memcpy(buf, "hello", 5);
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return 5;
  };
  nghttp2_submit_request(c, nullptr, nv, std::size(nv), with_body ? &prd : nullptr, nullptr);
  std::string out;  // nghttp2 writes the client preface itself
  const uint8_t* p;
  ssize_t n;
  while ((n = nghttp2_session_mem_send(c, &p)) > 0) out.append(reinterpret_cast<const char*>(p), n);
  nghttp2_session_del(c);
  return out;
}

}  // namespace

TEST(H2Server, RequestBecomesHttp11AndResponseComesBack) {
  std::string seen;
  std::string out = serve(client_request(true), &seen);
  EXPECT_EQ(seen.rfind("POST /p?q HTTP/1.1\r\nHost: a.test\r\n", 0), 0u) << seen;
  EXPECT_NE(seen.find("Cookie: a=1; b=2\r\n"), std::string::npos) << seen;
  EXPECT_NE(seen.find("Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), std::string::npos) << seen;
  // The answer goes back as HTTP/2: decode it with a client session.
  struct Got {
    std::string status, data, trailer;
    bool ended = false;
  } got;
  nghttp2_session_callbacks* cb;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_header_callback(
      cb, [](nghttp2_session*, const nghttp2_frame* f, const uint8_t* name, size_t nl, const uint8_t* value, size_t vl,
             uint8_t, void* ud) -> int {
        auto* g = static_cast<Got*>(ud);
        std::string_view k(reinterpret_cast<const char*>(name), nl), v(reinterpret_cast<const char*>(value), vl);
        if (k == ":status") g->status = v;
        if (k == "x-t") g->trailer = v;
        EXPECT_NE(k, "connection");
        EXPECT_NE(k, "transfer-encoding");
        return 0;
      });
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
      cb, [](nghttp2_session*, uint8_t, int32_t, const uint8_t* d, size_t n, void* ud) -> int {
        static_cast<Got*>(ud)->data.append(reinterpret_cast<const char*>(d), n);
        return 0;
      });
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, [](nghttp2_session*, int32_t, uint32_t e, void* ud) -> int {
    static_cast<Got*>(ud)->ended = e == 0;
    return 0;
  });
  nghttp2_session* c;
  nghttp2_session_client_new(&c, cb, &got);
  nghttp2_session_callbacks_del(cb);
  nghttp2_submit_settings(c, NGHTTP2_FLAG_NONE, nullptr, 0);
  nghttp2_nv nv[] = {{(uint8_t*)":method", (uint8_t*)"GET", 7, 3, 0}, {(uint8_t*)":path", (uint8_t*)"/", 5, 1, 0},
                     {(uint8_t*)":scheme", (uint8_t*)"http", 7, 4, 0}, {(uint8_t*)":authority", (uint8_t*)"a", 10, 1, 0}};
  nghttp2_submit_request(c, nullptr, nv, std::size(nv), nullptr, nullptr);  // stream 1, as the scripted one
  const uint8_t* p;
  while (nghttp2_session_mem_send(c, &p) > 0) {
  }
  ASSERT_GE(nghttp2_session_mem_recv(c, reinterpret_cast<const uint8_t*>(out.data()), out.size()), 0);
  nghttp2_session_del(c);
  EXPECT_EQ(got.status, "200");
  EXPECT_EQ(got.data, "ok");
  EXPECT_EQ(got.trailer, "1");
  EXPECT_TRUE(got.ended);
}

TEST(H2Server, ArbitraryBytesAfterThePrefaceEndTheSession) {
  const std::string valid = client_request(true);
  std::mt19937 rng(1);
  for (int i = 0; i < 300; ++i) {
    std::string in;
    if (i % 3 == 0) {
      in = std::string(kH2Preface);
      size_t n = rng() % 2000;
      for (size_t k = 0; k < n; ++k) in.push_back(static_cast<char>(rng()));
    } else {
      // A valid exchange with a few bytes changed.
      in = valid;
      for (int k = 0; k < 1 + i % 5; ++k) in[kH2Preface.size() + rng() % (in.size() - kH2Preface.size())] = rng();
    }
    serve(in);  // returns: the session ended and every stream with it
  }
}
