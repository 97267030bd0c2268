#include "transport/tls_stream.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace holdfast::transport {
namespace asio = boost::asio;
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

asio::awaitable<boost::system::error_code> TlsStream::handshake(asio::ssl::stream_base::handshake_type type) {
  auto [e] = co_await s_.async_handshake(type, tok);
  co_return e;
}

asio::awaitable<Stream::Result> TlsStream::read_some(asio::mutable_buffer b) {
  auto [e, n] = co_await s_.async_read_some(b, tok);
  co_return Result{e, n};
}

asio::awaitable<Stream::Result> TlsStream::write(std::array<asio::const_buffer, 2> bufs) {
  // Asio's ssl::stream encrypts one buffer per write: a head and its body
  // would cost two records and two sends. Up to one record's worth is
  // gathered first.
  constexpr size_t kRecord = 16 * 1024;
  const size_t total = bufs[0].size() + bufs[1].size();
  if (bufs[0].size() && bufs[1].size() && total <= kRecord) {
    gather_.assign(static_cast<const char*>(bufs[0].data()), bufs[0].size());
    gather_.append(static_cast<const char*>(bufs[1].data()), bufs[1].size());
    auto [e, n] = co_await asio::async_write(s_, asio::buffer(gather_), tok);
    co_return Result{e, n};
  }
  auto [e, n] = co_await asio::async_write(s_, bufs, tok);
  co_return Result{e, n};
}

void TlsStream::cancel() {
  boost::system::error_code ec;
  s_.next_layer().cancel(ec);
}

asio::awaitable<void> TlsStream::shutdown_send() {
  // close_notify first: without it a client cannot tell a response that the
  // close ends (HTTP/1.0, no Content-Length) from a truncated one. As nginx,
  // the peer's close_notify is not awaited: SSL_RECEIVED_SHUTDOWN makes
  // SSL_shutdown complete once the alert is written. The flag is then put
  // back so that a lingering close can still read (and discard) what the
  // client sends. The caller bounds the write with its deadline.
  SSL* ssl = s_.native_handle();
  if (ssl && SSL_is_init_finished(ssl) && !(SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN)) {
    SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_RECEIVED_SHUTDOWN);
    // An error (reset, deadline) leaves nothing more to say on this stream.
    co_await s_.async_shutdown(tok);
    SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN);
  }
  boost::system::error_code ec;
  s_.next_layer().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
}

void TlsStream::close() {
  // A quiet shutdown (the flags a completed close_notify exchange would
  // leave): without it SSL_free treats the session as broken, removes it
  // from the shared server cache and marks it not resumable, so session-id
  // resumption (ssl_session_tickets off) never works. A connection that
  // ended in a fatal alert has already had its session dropped by OpenSSL;
  // one whose handshake never finished has no session to keep.
  if (SSL* ssl = s_.native_handle(); ssl && SSL_is_init_finished(ssl)) {
    SSL_set_quiet_shutdown(ssl, 1);
    SSL_shutdown(ssl);
  }
  boost::system::error_code ec;
  s_.next_layer().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  s_.next_layer().close(ec);
}

}  // namespace holdfast::transport
