// Downstream HTTP/2 (RFC 9113) over any byte stream, TCP or TLS: one
// nghttp2 server session per connection, and each HTTP/2 stream handed to
// the request pipeline as a transport::Stream that carries HTTP/1.1 bytes
// (H2Stream), so that the pipeline is written once.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "http/h1_to_h2.h"
#include "transport/stream.h"
#include "transport/timed.h"

namespace holdfast::transport {

class H2Session;

// One HTTP/2 stream as a byte stream of HTTP/1.1: read_some yields a request
// head synthesised from the validated HEADERS, then the DATA payload
// (Content-Length when the client sent one, else chunked); write turns the
// response into HEADERS, DATA and trailers through H1ToH2. Both directions
// are flow-controlled: request DATA is acknowledged (WINDOW_UPDATE) only as
// it is read, and write() waits while more than kOutBound bytes are queued.
class H2Stream final : public Stream, private http::H1ToH2::Sink {
 public:
  static constexpr size_t kOutBound = 64 * 1024;

  H2Stream(H2Session& s, int32_t id);
  ~H2Stream() override;

  boost::asio::awaitable<Result> read_some(boost::asio::mutable_buffer b) override;
  boost::asio::awaitable<Result> write(std::array<boost::asio::const_buffer, 2> bufs) override;
  void cancel() override;
  boost::asio::awaitable<void> shutdown_send() override;
  void close() override;
  // False once the client reset the stream or the connection ended, too.
  bool is_open() const override { return !closed_ && !app_closed_ && !dead(); }
  void on_abandon(std::function<void()> f) override { abandon_ = std::move(f); }
  int32_t id() const { return id_; }

 private:
  friend class H2Session;
  void head(int status, const std::vector<http::Header>& fields, bool has_body) override;
  void data(const char* p, size_t n) override;
  void trailers(const std::vector<http::Header>& fields) override;
  void end() override;
  void finish_response();          // shutdown_send/close: end or reset
  void reset(uint32_t error_code);  // RST_STREAM, once
  bool dead() const;               // no more I/O: reset, closed, or the session ended
  size_t queued() const { return out_.size() - out_off_; }
  void wake_reader();
  void wake_writer();
  void abandoned();                // the client left before the response was whole: the hook, once

  H2Session& s_;
  int32_t id_;
  // --- request (filled by the session's callbacks) ---
  std::string method_, path_, authority_, host_, cookie_, user_agent_;
  std::string head_;           // the synthesised HTTP/1.1 request head
  size_t head_off_ = 0;
  std::string body_;           // DATA received and not read yet
  size_t body_off_ = 0;
  std::string frame_;          // chunk framing waiting to be read
  size_t frame_off_ = 0;
  uint64_t chunk_left_ = 0;
  size_t header_bytes_ = 0;    // decoded field bytes (name + value + 32 each)
  size_t trailer_bytes_ = 0;   // the same, of the request trailers
  std::string trailers_;       // request trailers as HTTP/1.1 field lines, for the last chunk
  int bad_ = 0;                // a status to answer instead of running the pipeline
  bool line_done_ = false;     // the request line is in head_
  bool has_length_ = false;    // the client sent content-length
  bool chunked_ = false;       // the body is presented chunked
  bool in_end_ = false;        // END_STREAM received
  bool in_eof_ = false;        // the last byte of the body (and framing) was read
  // --- response ---
  http::H1ToH2 conv_;
  std::string out_;            // DATA bytes queued for the data provider
  size_t out_off_ = 0;
  std::vector<std::string> trailer_store_;  // name, value, name, value...
  bool out_end_ = false;
  bool submitted_ = false;     // the response HEADERS were submitted
  bool deferred_ = false;      // the data provider returned DEFERRED
  bool rst_after_end_ = false;  // the request body was not read whole: RST_STREAM(NO_ERROR) after the response
  bool reset_sent_ = false;
  // --- lifetime ---
  bool running_ = false;       // the pipeline coroutine runs on it
  bool closed_ = false;        // nghttp2 closed the stream (or the session ended)
  bool app_closed_ = false;    // close() was called
  bool rd_waiting_ = false, wr_waiting_ = false, rd_abort_ = false, wr_abort_ = false;
  boost::asio::steady_timer rd_wake_, wr_wake_;
  std::function<void()> abandon_;  // on_abandon's
  H2Stream* next_ = nullptr;   // the session's list of live streams
  H2Stream* prev_ = nullptr;
};

struct H2Hooks {
  // Runs the request pipeline on one stream (one request).
  std::function<boost::asio::awaitable<void>(H2Stream&)> serve;
  // The worker's deadline list (transport/timed.h).
  std::function<void(Timed*)> watch, unwatch;
  std::function<bool()> draining;
  // A request the session answered itself (400, 405, 431; no pipeline ran
  // for it), so that it is logged and counted as the pipeline's answers are.
  // The fields are as the client sent them (not checked).
  std::function<void(std::string_view method, std::string_view path, std::string_view user_agent, int status)>
      rejected;
};

struct H2Options {
  Http2Config http2;
  double keepalive_timeout = 60;      // idle connection (no stream open)
  double header_timeout = 60;         // a header block in progress, on an idle connection
  double send_timeout = 10;           // one write to the client
};

// Serves one HTTP/2 connection on `conn` until it ends, and returns once
// every stream's pipeline has returned. `already` holds bytes read from the
// connection before (the h2c connection preface). The caller closes `conn`.
boost::asio::awaitable<void> serve_h2(boost::asio::io_context& io, Stream& conn, std::string_view already,
                                      const H2Options& opts, H2Hooks& hooks);

// The HTTP/2 client connection preface (h2c prior knowledge starts with it).
inline constexpr std::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

}  // namespace holdfast::transport
