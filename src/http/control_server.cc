#include "http/control_server.h"

#include <fmt/format.h>

#include <stdexcept>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "core/log.h"
#include "http/codec.h"
#include "transport/timed.h"
#include "http/uri.h"

namespace holdfast::http {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using transport::Buf;
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

std::string url_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') out += ' ';
    else if (s[i] == '%' && i + 2 < s.size() && isxdigit(static_cast<unsigned char>(s[i + 1])) &&
             isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else out += s[i];
  }
  return out;
}

std::string ControlRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return v;
  return {};
}

std::string ControlRequest::arg(std::string_view name) const {
  std::string_view q = query;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    size_t eq = pair.find('=');
    if (url_decode(pair.substr(0, eq)) == name) return eq == std::string_view::npos ? "" : url_decode(pair.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  return {};
}

ControlServer::ControlServer(asio::io_context& io, std::string name, ControlHandler handler, size_t max_body)
    : io_(io), name_(std::move(name)), handler_(std::move(handler)), max_body_(max_body) {}

void ControlServer::listen(const ListenAddr& a) {
  // The error names the server and the address (the caller only logs it).
  acceptor_ = std::make_unique<tcp::acceptor>(io_);
  boost::system::error_code ec;
  const auto ip = asio::ip::make_address(a.ip, ec);
  tcp::endpoint ep(ip, a.port);
  if (!ec) acceptor_->open(ep.protocol(), ec);
  if (!ec) acceptor_->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_->bind(ep, ec);
  if (!ec) acceptor_->listen(512, ec);
  if (ec) throw std::runtime_error(fmt::format("{} server on {}:{}: {}", name_, a.ip, a.port, ec.message()));
}

uint16_t ControlServer::port() const { return acceptor_->local_endpoint().port(); }

void ControlServer::start() { asio::co_spawn(io_, accept_loop(), asio::detached); }

void ControlServer::stop() {
  stopped_ = true;
  boost::system::error_code ec;
  if (acceptor_) acceptor_->close(ec);
  for (tcp::socket* s : conns_) s->close(ec);
}

asio::awaitable<void> ControlServer::accept_loop() {
  for (;;) {
    auto [ec, sock] = co_await acceptor_->async_accept(tok);
    // A connection accepted just before stop() is not served.
    if (stopped_) co_return;
    if (ec) {
      if (!acceptor_->is_open()) co_return;
      continue;
    }
    asio::co_spawn(io_, serve(std::move(sock)), asio::detached);
  }
}

asio::awaitable<void> ControlServer::serve(tcp::socket sock) {
  if (stopped_) co_return;
  struct Listed {  // in conns_ while this coroutine runs, so stop() can close it
    std::unordered_set<tcp::socket*>& set;
    tcp::socket* s;
    ~Listed() { set.erase(s); }
  } listed{conns_, &sock};
  conns_.insert(&sock);
  Buf in;
  in.data.resize(16384);
  boost::system::error_code ec;
  auto rep = sock.remote_endpoint(ec);
  std::string remote = ec ? "" : rep.address().to_string();
  if (remote.rfind("::ffff:", 0) == 0) remote = remote.substr(7);
  asio::steady_timer deadline(io_);
  auto arm = [&](int seconds) {
    deadline.expires_after(std::chrono::seconds(seconds));
    deadline.async_wait([&sock](boost::system::error_code e) {
      if (!e) { boost::system::error_code ig; sock.close(ig); }
    });
  };
  Limits limits;
  for (;;) {
    RequestHead head;
    ParseError perr;
    ParseStatus st = ParseStatus::incomplete;
    arm(60);
    while ((st = in.avail() ? parse_request(std::string_view(in.data.data() + in.begin, in.avail()), limits, head, perr)
                            : ParseStatus::incomplete) == ParseStatus::incomplete) {
      in.compact();
      if (in.end == in.data.size()) in.data.resize(in.data.size() * 2);
      auto [rec, n] = co_await sock.async_read_some(asio::buffer(in.data.data() + in.end, in.data.size() - in.end), tok);
      if (rec || n == 0) { deadline.cancel(); co_return; }
      in.end += n;
    }
    ControlRequest req;
    ControlResponse resp;
    bool keep = head.keep_alive;
    if (st == ParseStatus::error) {
      resp.status = perr.status;
      resp.body = fmt::format("{{\"error_msg\":\"{}\"}}\n", perr.reason);
      keep = false;
    } else {
      req.method = std::string(head.method);
      req.path = normalize_path(head.path).value_or(std::string(head.path));
      req.query = std::string(head.query);
      req.remote_addr = remote;
      for (const auto& h : head.headers) req.headers.emplace_back(std::string(h.name), std::string(h.value));
      in.begin += head.head_bytes;
      bool body_ok = true;
      if (head.body == BodyKind::length) {
        if (head.content_length > max_body_) body_ok = false;
        while (body_ok && in.avail() < head.content_length) {
          in.compact();
          if (in.data.size() - in.end < 16384) in.data.resize(in.data.size() * 2);
          auto [rec, n] = co_await sock.async_read_some(asio::buffer(in.data.data() + in.end, in.data.size() - in.end), tok);
          if (rec || n == 0) { deadline.cancel(); co_return; }
          in.end += n;
        }
        if (body_ok) {
          req.body.assign(in.data.data() + in.begin, head.content_length);
          in.begin += head.content_length;
        }
      } else if (head.body == BodyKind::chunked) {
        ChunkedValidator v;
        for (;;) {
          size_t used = 0;
          auto r = v.feed(std::string_view(in.data.data() + in.begin, in.avail()), used, &req.body);
          in.begin += used;
          if (r == ChunkedValidator::Result::error || req.body.size() > max_body_) { body_ok = false; break; }
          if (r == ChunkedValidator::Result::done) break;
          in.begin = in.end = 0;
          auto [rec, n] = co_await sock.async_read_some(asio::buffer(in.data), tok);
          if (rec || n == 0) { deadline.cancel(); co_return; }
          in.end = n;
        }
      }
      if (!body_ok) {
        resp.status = 413;
        resp.body = "{\"error_msg\":\"request body too large or malformed\"}\n";
        keep = false;
      } else {
        try {
          resp = co_await handler_(req);
        } catch (const std::exception& e) {
          log::error("{}: handler failed: {}", name_, e.what());
          resp.status = 500;
          resp.body = "{\"error_msg\":\"internal error\"}\n";
        }
      }
    }
    std::string out = fmt::format("HTTP/1.1 {} {}\r\nServer: holdfast\r\n", resp.status,
                                  resp.status < 300 ? "OK" : resp.status < 500 ? "Client Error" : "Server Error");
    for (const auto& [k, v] : resp.headers) out += k + ": " + v + "\r\n";
    out += fmt::format("Content-Length: {}\r\n", resp.body.size());
    if (!keep) out += "Connection: close\r\n";
    out += "\r\n";
    if (req.method != "HEAD") out += resp.body;
    auto [wec, wn] = co_await asio::async_write(sock, asio::buffer(out), tok);
    deadline.cancel();
    if (wec || !keep) break;
  }
  boost::system::error_code ig;
  sock.shutdown(tcp::socket::shutdown_both, ig);
}

}  // namespace holdfast::http
