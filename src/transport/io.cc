#include "transport/io.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace holdfast::transport {
namespace asio = boost::asio;
using boost::system::error_code;
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

asio::awaitable<size_t> read_some_until(Stream& s, Timed& t, Buf& b, int64_t deadline, error_code& ec,
                                        bool& timed_out) {
  t.fired = false;
  t.deadline = deadline;
  const asio::mutable_buffer into(b.data.data() + b.end, b.data.size() - b.end);
  error_code e;
  size_t n;
  if (auto* sock = s.plain()) std::tie(e, n) = co_await sock->async_read_some(into, tok);
  else std::tie(e, n) = co_await s.read_some(into);
  t.deadline = 0;
  timed_out = t.fired;
  ec = e;
  if (!e) b.end += n;
  co_return n;
}

asio::awaitable<size_t> read_some(Stream& s, Timed& t, Buf& b, double timeout, error_code& ec, bool& timed_out) {
  co_return co_await read_some_until(s, t, b, now_ms() + ms(timeout), ec, timed_out);
}

asio::awaitable<bool> write_all(Stream& s, Timed& t, std::array<asio::const_buffer, 2> bufs, double timeout,
                                bool& timed_out, size_t* written) {
  t.fired = false;
  t.deadline = now_ms() + ms(timeout);
  error_code e;
  size_t n;
  if (auto* sock = s.plain()) {
    // One buffer goes out as a plain send (see transport/uring_ops.h).
    if (bufs[1].size() == 0) std::tie(e, n) = co_await asio::async_write(*sock, bufs[0], tok);
    else if (bufs[0].size() == 0) std::tie(e, n) = co_await asio::async_write(*sock, bufs[1], tok);
    else std::tie(e, n) = co_await asio::async_write(*sock, bufs, tok);
  } else {
    std::tie(e, n) = co_await s.write(bufs);
  }
  t.deadline = 0;
  timed_out = t.fired;
  if (written) *written = n;
  co_return !e;
}

asio::awaitable<Stream::Result> read_some(Stream& s, asio::mutable_buffer b) {
  if (auto* sock = s.plain()) {
    auto [e, n] = co_await sock->async_read_some(b, tok);
    co_return Stream::Result{e, n};
  }
  co_return co_await s.read_some(b);
}

asio::awaitable<Stream::Result> write(Stream& s, asio::const_buffer b) {
  if (auto* sock = s.plain()) {
    auto [e, n] = co_await asio::async_write(*sock, b, tok);
    co_return Stream::Result{e, n};
  }
  co_return co_await s.write({b, asio::const_buffer()});
}

}  // namespace holdfast::transport
