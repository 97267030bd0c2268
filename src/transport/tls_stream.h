// TLS over TCP (OpenSSL through Asio's ssl::stream), as one more byte
// stream under the request pipeline. Only the listener that accepts TLS
// and the upstream connector include this header.
#pragma once
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>

#include <string>

#include "transport/stream.h"

namespace holdfast::transport {

class TlsStream final : public Stream {
 public:
  TlsStream(boost::asio::ip::tcp::socket s, boost::asio::ssl::context& ctx) : s_(std::move(s), ctx) {}

  boost::asio::ssl::stream<boost::asio::ip::tcp::socket>& ssl() { return s_; }
  SSL* native() { return s_.native_handle(); }
  boost::asio::ip::tcp::socket& socket() { return s_.next_layer(); }

  // The handshake; its deadline is the caller's Timed (cancel() ends it).
  boost::asio::awaitable<boost::system::error_code> handshake(boost::asio::ssl::stream_base::handshake_type type);

  boost::asio::awaitable<Result> read_some(boost::asio::mutable_buffer b) override;
  boost::asio::awaitable<Result> write(std::array<boost::asio::const_buffer, 2> bufs) override;
  void cancel() override;
  // Half-closes TCP without a close_notify: a full TLS shutdown waits for
  // the peer's close_notify, and the lingering close that calls this must
  // go on reading instead (nginx also closes quietly after an error).
  boost::asio::awaitable<void> shutdown_send() override;
  void close() override;
  bool is_open() const override { return s_.next_layer().is_open(); }

 private:
  boost::asio::ssl::stream<boost::asio::ip::tcp::socket> s_;
  std::string gather_;  // a head and a small body go out as one TLS record
};

}  // namespace holdfast::transport
