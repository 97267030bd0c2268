// Reads and writes with deadlines over any Stream. The deadline lives in
// the stream's Timed (the worker's sweeper enforces it); `timed_out` tells
// a deadline from a peer's error.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>

#include <array>
#include <cstddef>
#include <cstdint>

#include "transport/stream.h"
#include "transport/timed.h"

namespace holdfast::transport {

inline int64_t ms(double seconds) { return static_cast<int64_t>(seconds * 1000); }

// Reads into b.data[b.end..] until `deadline` (ms, steady clock); returns
// the bytes read (0 on end of stream or error, see ec).
boost::asio::awaitable<size_t> read_some_until(Stream& s, Timed& t, Buf& b, int64_t deadline,
                                               boost::system::error_code& ec, bool& timed_out);
boost::asio::awaitable<size_t> read_some(Stream& s, Timed& t, Buf& b, double timeout, boost::system::error_code& ec,
                                         bool& timed_out);

// Writes a head and a body, either of which may be empty, within `timeout`
// seconds. `written` gets what the stream accepted.
boost::asio::awaitable<bool> write_all(Stream& s, Timed& t, std::array<boost::asio::const_buffer, 2> bufs,
                                       double timeout, bool& timed_out, size_t* written = nullptr);
inline boost::asio::awaitable<bool> write_all(Stream& s, Timed& t, boost::asio::const_buffer b, double timeout,
                                              bool& timed_out, size_t* written = nullptr) {
  return write_all(s, t, {b, boost::asio::const_buffer()}, timeout, timed_out, written);
}

// Without a deadline of their own (tunnels renew theirs on traffic).
boost::asio::awaitable<Stream::Result> read_some(Stream& s, boost::asio::mutable_buffer b);
boost::asio::awaitable<Stream::Result> write(Stream& s, boost::asio::const_buffer b);

}  // namespace holdfast::transport
