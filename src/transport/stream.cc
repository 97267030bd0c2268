#include "transport/stream.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <cstring>

#include "transport/timed.h"

namespace holdfast::transport {
namespace asio = boost::asio;
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void Buf::compact() {
  if (begin == 0) return;
  if (begin < end) std::memmove(data.data(), data.data() + begin, end - begin);
  end -= begin;
  begin = 0;
}

asio::awaitable<Stream::Result> TcpStream::read_some(asio::mutable_buffer b) {
  auto [e, n] = co_await sock_.async_read_some(b, tok);
  co_return Result{e, n};
}

asio::awaitable<Stream::Result> TcpStream::write(std::array<asio::const_buffer, 2> bufs) {
  auto [e, n] = co_await asio::async_write(sock_, bufs, tok);
  co_return Result{e, n};
}

void TcpStream::cancel() {
  boost::system::error_code ec;
  sock_.cancel(ec);
}

asio::awaitable<void> TcpStream::shutdown_send() {
  boost::system::error_code ec;
  sock_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  co_return;
}

void TcpStream::close() {
  boost::system::error_code ec;
  sock_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  sock_.close(ec);
}

}  // namespace holdfast::transport
