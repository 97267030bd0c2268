// The byte stream a connection runs on: plain TCP here, TLS and HTTP/2
// streams beside it. The request pipeline (proxy/pipeline.cc) reads and
// writes HTTP/1 bytes through this interface and never learns which one
// carries them; listeners and the upstream connector choose.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <array>
#include <cstddef>
#include <functional>
#include <tuple>

namespace holdfast::transport {

class Stream {
 public:
  using Result = std::tuple<boost::system::error_code, size_t>;
  virtual ~Stream() = default;

  // Reads at least one byte into `b`, or fails (end of stream is
  // asio::error::eof).
  virtual boost::asio::awaitable<Result> read_some(boost::asio::mutable_buffer b) = 0;
  // Writes both buffers whole (either may be empty); the count is what the
  // stream accepted before an error.
  virtual boost::asio::awaitable<Result> write(std::array<boost::asio::const_buffer, 2> bufs) = 0;
  // Ends every pending read and write with operation_aborted (deadlines,
  // drain); the stream stays usable.
  virtual void cancel() = 0;
  // No more bytes from us; the peer may go on sending (lingering close).
  virtual boost::asio::awaitable<void> shutdown_send() = 0;
  // Closes at once, both directions. Later operations fail immediately.
  virtual void close() = 0;
  virtual bool is_open() const = 0;
  // `f` runs (at most once, on the stream's executor, never inside one of
  // this stream's own operations) when the peer abandons the stream before
  // its response is whole: an HTTP/2 RST_STREAM, or its connection lost.
  // So a wait on something else (the upstream) can end at once instead of
  // when that answers. Empty clears it. Streams that learn of it only from
  // their own next read or write (TCP, TLS) never call it.
  virtual void on_abandon(std::function<void()> f) { (void)f; }

  // The TCP socket when this stream is plain TCP, else null. The I/O
  // helpers (transport/io.h) use it directly: plain TCP is the common case,
  // and a virtual coroutine would add a frame to every read and write.
  boost::asio::ip::tcp::socket* plain() const { return plain_; }

 protected:
  boost::asio::ip::tcp::socket* plain_ = nullptr;
};

class TcpStream final : public Stream {
 public:
  explicit TcpStream(boost::asio::ip::tcp::socket s) : sock_(std::move(s)) { plain_ = &sock_; }
  explicit TcpStream(boost::asio::io_context& io) : sock_(io) { plain_ = &sock_; }
  TcpStream(const TcpStream&) = delete;
  TcpStream& operator=(const TcpStream&) = delete;

  boost::asio::ip::tcp::socket& socket() { return sock_; }

  boost::asio::awaitable<Result> read_some(boost::asio::mutable_buffer b) override;
  boost::asio::awaitable<Result> write(std::array<boost::asio::const_buffer, 2> bufs) override;
  void cancel() override;
  boost::asio::awaitable<void> shutdown_send() override;
  void close() override;
  bool is_open() const override { return sock_.is_open(); }

 private:
  boost::asio::ip::tcp::socket sock_;
};

}  // namespace holdfast::transport
