// HTTP/2 to upstreams (scheme grpc: h2c with prior knowledge; grpcs: h2 over
// TLS, ALPN h2). The pipeline keeps speaking HTTP/1.1: each call runs on an
// H2ClientStream, a transport::Stream that turns the request bytes written
// to it into one HTTP/2 stream and yields the response as HTTP/1.1 bytes
// (chunked body, HTTP/2 trailers as chunked trailers). Streams multiplex on
// one pooled connection per upstream node per worker (H2Pool): single
// threaded, no locks.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "http/h2_upstream_codec.h"
#include "transport/stream.h"
#include "transport/timed.h"

namespace holdfast::tls {
struct ClientContext;
}

namespace holdfast::proxy {

class Worker;
class H2Session;

// Wakes one coroutine waiting on it; a wake with nobody waiting is kept.
class H2Waiter {
 public:
  enum class Woke : uint8_t { signal, cancel, timeout };
  explicit H2Waiter(boost::asio::any_io_executor ex) : timer_(ex) {}
  void wake();
  void cancel();  // only a pending wait
  // `deadline_ms` on the steady clock (now_ms), 0 for none.
  boost::asio::awaitable<Woke> wait(int64_t deadline_ms);

 private:
  boost::asio::steady_timer timer_;
  bool signaled_ = false, waiting_ = false, cancelled_ = false;
};

class H2ClientStream final : public transport::Stream {
 public:
  // `call_ms`: the call's deadline from when its request goes out (the
  // client's grpc-timeout, bounded by the route's read timeout); -1: none.
  H2ClientStream(std::shared_ptr<H2Session> s, int64_t call_ms);
  ~H2ClientStream() override;
  H2ClientStream(const H2ClientStream&) = delete;
  H2ClientStream& operator=(const H2ClientStream&) = delete;

  // Both fail with connection_refused once the origin refused the stream
  // unprocessed (see refused_), else connection_reset when it ended early.
  boost::asio::awaitable<Result> read_some(boost::asio::mutable_buffer b) override;
  boost::asio::awaitable<Result> write(std::array<boost::asio::const_buffer, 2> bufs) override;
  void cancel() override;
  boost::asio::awaitable<void> shutdown_send() override { co_return; }
  // Resets the HTTP/2 stream (if still open); later operations fail.
  void close() override;
  bool is_open() const override { return !closed_by_us_; }

 private:
  friend class H2Session;
  bool submit();
  void expire();
  void detach_stream(uint32_t code);
  // From the session (nghttp2 callbacks).
  ssize_t read_data(uint8_t* buf, size_t len, uint32_t* flags);
  void on_stream_close(uint32_t code);
  void on_session_end();

  std::shared_ptr<H2Session> session_;
  int32_t id_ = -1;
  http::H1ToH2Request req_;
  std::string send_;  // request payload not yet taken by nghttp2
  size_t send_off_ = 0;
  bool deferred_ = false;
  std::string out_;   // the HTTP/1.1 response not yet read
  size_t out_off_ = 0;
  http::H2ToH1Response resp_{out_};
  size_t unconsumed_ = 0;  // DATA bytes received, not yet given to flow control
  bool stream_gone_ = false;   // nghttp2 no longer knows the stream (closed, reset, session ended)
  bool failed_ = false;        // ended before a complete response
  // The origin refused the stream before any response byte (REFUSED_STREAM,
  // or a GOAWAY below it): it did not process the request (RFC 9113 §8.7),
  // and reads and writes fail with connection_refused so that the caller
  // may send it again.
  bool refused_ = false;
  size_t header_bytes_ = 0;    // decoded response header and trailer fields so far (bounded)
  bool closed_by_us_ = false;
  int64_t call_ms_;
  int64_t deadline_ = 0;       // from call_ms_ once the request went out
  H2Waiter rwait_, wwait_;
};

// What a call needs to reach one upstream node.
struct H2Target {
  std::string key;  // pool key: the node (and for grpcs the TLS identity and SNI)
  boost::asio::ip::tcp::endpoint endpoint;
  tls::ClientContext* tls = nullptr;        // grpcs
  std::string sni;                          // grpcs
  std::string host;                         // grpcs: the node's host (IP verification)
  double connect_timeout = 60;              // seconds, TCP and TLS
  double send_timeout = 60;                 // seconds, a stuck connection write
  int max_streams = 1000;                   // keepalive_requests: streams per connection
  int64_t idle_ms = 60000;                  // keepalive_timeout: idle connection kept
  std::string_view upstream;                // for log lines
  std::string_view node;                    // host, for log lines
  uint16_t port = 0;
};

class H2Pool {
 public:
  explicit H2Pool(Worker& w) : w_(w) {}
  ~H2Pool();

  struct Opened {
    std::shared_ptr<H2ClientStream> stream;
    int fail_status = 502;  // without a stream: 502, or 504 when connecting timed out
    bool timed_out = false;
    bool reused = false;    // on a connection that served calls before
  };
  // `call_ms`: as H2ClientStream's.
  boost::asio::awaitable<Opened> open(const H2Target& t, int64_t call_ms);

 private:
  friend class H2Session;
  void remove(const std::string& key, const H2Session* s);
  Worker& w_;
  std::unordered_map<std::string, std::vector<std::shared_ptr<H2Session>>> sessions_;
  // The stream cap each node's connection last announced (its next
  // connection assumes it until its own SETTINGS arrive).
  std::unordered_map<std::string, uint32_t> peer_caps_;
};

}  // namespace holdfast::proxy
