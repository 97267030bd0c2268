#include "proxy/side_request.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/log.h"
#include "http/codec.h"
#include "http/head_writer.h"
#include "proxy/pipeline.h"
#include "proxy/worker.h"
#include "tls/client_context.h"
#include "transport/io.h"
#include "transport/tls_stream.h"

namespace holdfast::plugins {
const std::string* SideResponse::header(std::string_view name) const {
  for (const auto& [n, v] : headers)
    if (http::iequals(n, name)) return &v;
  return nullptr;
}
}  // namespace holdfast::plugins

namespace holdfast::proxy {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using asio::awaitable;
using boost::system::error_code;
using plugins::SideRequest;
using plugins::SideResponse;
using namespace holdfast::transport;
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

namespace {

constexpr size_t kHeadMax = 64 * 1024;  // as the proxy bounds an upstream's response head

// Process-wide: written rarely (once per mirrored request), read by the
// metrics page.
std::atomic<uint64_t> g_mirror_answered{0}, g_mirror_failed{0}, g_mirror_too_large{0}, g_mirror_busy{0};
thread_local int t_detached_in_flight = 0;  // this worker's (one thread per worker)

bool framing_or_hop(std::string_view n) {
  using http::iequals;
  return iequals(n, "host") || iequals(n, "content-length") || iequals(n, "transfer-encoding") ||
         iequals(n, "connection") || iequals(n, "keep-alive") || iequals(n, "proxy-connection") || iequals(n, "te") ||
         iequals(n, "trailer") || iequals(n, "upgrade") || iequals(n, "expect");
}

std::string authority(const SideRequest& r) {
  const bool v6 = r.host.find(':') != std::string::npos;
  std::string h = v6 ? "[" + r.host + "]" : r.host;
  const uint16_t def = r.scheme == "https" ? 443 : 80;
  if (r.port != def) h += ":" + std::to_string(r.port);
  return h;
}

// Reads the response body (dechunked) into `out`, at most `limit` bytes.
awaitable<bool> read_body(UpstreamConn& c, const http::ResponseHead& resp, int64_t deadline, size_t limit,
                          std::string& out, SideResponse& res) {
  http::ChunkedValidator v;
  uint64_t remaining = resp.content_length;
  if (resp.body == http::BodyKind::length && resp.content_length > limit) {
    res.error = "response body too large";
    co_return false;
  }
  for (;;) {
    std::string_view avail(c.buf.data.data() + c.buf.begin, c.buf.avail());
    size_t take = avail.size();
    bool at_end = false;
    if (resp.body == http::BodyKind::none) {
      co_return true;
    } else if (resp.body == http::BodyKind::length) {
      take = static_cast<size_t>(std::min<uint64_t>(take, remaining));
      remaining -= take;
      at_end = remaining == 0;
      out.append(avail.substr(0, take));
    } else if (resp.body == http::BodyKind::chunked) {
      auto r = v.feed(avail, take, &out);
      if (r == http::ChunkedValidator::Result::error) {
        res.error = "invalid chunked response body";
        co_return false;
      }
      at_end = r == http::ChunkedValidator::Result::done;
    } else {
      out.append(avail);
    }
    c.buf.begin += take;
    if (out.size() > limit) {
      res.error = "response body too large";
      co_return false;
    }
    if (at_end) co_return true;
    c.buf.begin = c.buf.end = 0;
    error_code ec;
    bool to = false;
    size_t n = co_await read_some_until(*c.stream, c.timed, c.buf, deadline, ec, to);
    if (ec || n == 0) {
      if (resp.body == http::BodyKind::until_close && !to && !ec) co_return true;
      if (resp.body == http::BodyKind::until_close && ec == asio::error::eof) co_return true;
      res.timed_out = to;
      res.error = to ? "timeout" : "response body cut short";
      co_return false;
    }
  }
}

}  // namespace

awaitable<SideResponse> side_exchange(Worker& w, const SideRequest& r) {
  SideResponse res;
  const int64_t deadline = now_ms() + std::max<int64_t>(ms(r.timeout), 1);
  auto left = [&] { return std::max<double>((deadline - now_ms()) / 1000.0, 0.001); };

  // The head: the plugin's headers without framing or hop-by-hop fields,
  // every field checked as the proxy checks its own (no control characters).
  std::string head;
  http::HeadWriter hw(head, "a plugin's side request");
  hw.request_line(r.method, r.target, false);
  hw.header("Host", r.host_header.empty() ? authority(r) : r.host_header);
  for (const auto& [n, v] : r.headers)
    if (!framing_or_hop(n)) hw.header(n, v);
  if (r.body_chunked) hw.header("Transfer-Encoding", "chunked");
  else if (!r.body.empty() || r.method == "POST" || r.method == "PUT" || r.method == "PATCH")
    hw.header("Content-Length", std::to_string(r.body.size()));
  if (!r.keepalive) hw.header("Connection", "close");
  hw.end();
  if (!hw.ok()) {
    res.error = "invalid characters found in the request head: " + hw.fault();
    res.refused = true;
    co_return res;
  }

  const std::string key = fmt::format("side|{}|{}|{}|{}", r.scheme, r.host, r.port,
                                      r.tls ? r.tls->identity : std::string());
  std::unique_ptr<UpstreamConn> conn;
  // Whatever ends this coroutine (an exception included), a connection it
  // still owns leaves the worker's deadline list before it is freed
  // (unwatching one that is not listed does nothing).
  struct Unlist {
    Worker& w;
    std::unique_ptr<UpstreamConn>& c;
    ~Unlist() {
      if (c) w.unwatch(&c->timed);
    }
  } unlist{w, conn};
  // A pooled connection the peer closed meanwhile is retried once, on a new
  // one, when nothing came back on it.
  for (int attempt = 0; attempt < 2; ++attempt) {
    res = SideResponse{};
    conn = r.keepalive && attempt == 0 ? w.take_pooled(key) : nullptr;
    const bool reused = conn != nullptr;
    if (!conn) {
      error_code ec;
      auto addr = asio::ip::make_address(r.host, ec);
      tcp::endpoint ep;
      if (!ec) {
        ep = tcp::endpoint(addr, r.port);
      } else {
        // Names resolve on the worker's io_context: getaddrinfo runs on
        // Asio's resolver thread, the worker only waits for its answer.
        tcp::resolver resolver(w.io());
        auto [rec, results] = co_await resolver.async_resolve(r.host, std::to_string(r.port), tok);
        if (rec || results.empty()) {
          res.error = "failed to resolve " + r.host;
          co_return res;
        }
        ep = *results.begin();
      }
      if (now_ms() >= deadline) {
        res.error = "timeout";
        res.timed_out = true;
        co_return res;
      }
      conn = std::make_unique<UpstreamConn>(w.io());
      conn->buf.data.resize(16 * 1024);
      conn->timed.stream = conn->stream;
      w.watch(&conn->timed);
      conn->timed.deadline = deadline;
      conn->timed.fired = false;
      auto [cec] = co_await conn->tcp.socket().async_connect(ep, tok);
      if (cec) {
        res.timed_out = conn->timed.fired;
        res.error = res.timed_out ? "timeout" : cec.message();
        w.unwatch(&conn->timed);
        co_return res;
      }
      conn->tcp.socket().set_option(tcp::no_delay(true), cec);
      if (r.scheme == "https" && r.tls) {
        conn->tls = std::make_unique<TlsStream>(std::move(conn->tcp.socket()), r.tls->ctx);
        conn->stream = conn->tls.get();
        conn->timed.stream = conn->stream;
        error_code hec = asio::error::no_memory;
        if (tls::prepare_client(conn->tls->native(), *r.tls, tls::sni_for_host(r.host), r.host))
          hec = co_await conn->tls->handshake(asio::ssl::stream_base::client);
        if (hec) {
          res.timed_out = conn->timed.fired;
          const long vr = SSL_get_verify_result(conn->tls->native());
          res.error = res.timed_out ? "timeout"
                      : vr != X509_V_OK ? fmt::format("certificate verify failed: {}", X509_verify_cert_error_string(vr))
                                        : hec.message();
          w.unwatch(&conn->timed);
          co_return res;
        }
      }
      conn->timed.deadline = 0;
    }
    conn->idle_timeout_ms = ms(r.keepalive_timeout);

    bool to = false;
    std::array<asio::const_buffer, 2> bufs{asio::buffer(head), asio::buffer(r.body)};
    bool ok = co_await write_all(*conn->stream, conn->timed, bufs, left(), to);
    http::ResponseHead resp;
    bool got_bytes = false;
    while (ok) {
      http::ParseError perr;
      http::ParseStatus st = http::ParseStatus::incomplete;
      if (conn->buf.avail())
        st = http::parse_response(std::string_view(conn->buf.data.data() + conn->buf.begin, conn->buf.avail()),
                                  r.method, resp, perr);
      if (st == http::ParseStatus::complete) {
        if (resp.status >= 100 && resp.status < 200) {
          // Interim responses are skipped; the one deadline bounds them all.
          conn->buf.begin += resp.head_bytes;
          got_bytes = true;
          continue;
        }
        break;
      }
      if (st == http::ParseStatus::error) {
        res.error = "invalid response: " + std::string(perr.reason);
        got_bytes = true;
        ok = false;
        break;
      }
      conn->buf.compact();
      if (conn->buf.end == conn->buf.data.size()) {
        if (conn->buf.data.size() >= kHeadMax) {
          res.error = "response head too large";
          got_bytes = true;
          ok = false;
          break;
        }
        conn->buf.data.resize(conn->buf.data.size() * 2);
      }
      error_code ec;
      size_t n = co_await read_some_until(*conn->stream, conn->timed, conn->buf, deadline, ec, to);
      if (ec || n == 0) {
        got_bytes = got_bytes || conn->buf.avail() > 0;
        ok = false;
        break;
      }
    }
    if (!ok) {
      w.unwatch(&conn->timed);
      conn.reset();
      if (reused && !got_bytes && !to) continue;
      if (res.error.empty()) {
        res.timed_out = to;
        res.error = to ? "timeout" : "closed";
      }
      co_return res;
    }
    // Copy what the plugin reads before the buffer is reused for the body.
    res.status = resp.status;
    const int resp_status = resp.status;
    for (const auto& h : resp.headers) res.headers.emplace_back(std::string(h.name), std::string(h.value));
    conn->buf.begin += resp.head_bytes;
    const http::BodyKind kind = resp.body;
    const bool keep = resp.keep_alive;
    http::ResponseHead framing;
    framing.body = resp.body;
    framing.content_length = resp.content_length;
    if (!co_await read_body(*conn, framing, deadline, r.max_response_body, res.body, res)) {
      w.unwatch(&conn->timed);
      res.body.clear();
      // A refusal (3xx and up) stays a refusal, with an empty body, however
      // its body ends: read as "no answer" it would let allow_degradation
      // pass the request the service denied.
      if (resp_status < 300) {
        res.status = 0;
        res.headers.clear();
      } else {
        log::warn("side request to {}: answer {} kept without its body: {}", log::json_escape(authority(r)),
                  resp_status, log::json_escape(res.error));
      }
      co_return res;
    }
    if (r.keepalive && keep && kind != http::BodyKind::until_close && conn->buf.avail() == 0 && !w.draining()) {
      conn->idle_since = now_ms();
      w.give_back(key, std::move(conn), r.keepalive_pool);
    } else {
      w.unwatch(&conn->timed);
    }
    co_return res;
  }
  res.error = "closed";
  co_return res;
}

void side_launch(Worker& w, std::shared_ptr<SideRequest> r) {
  if (t_detached_in_flight >= kMaxDetachedPerWorker) {
    g_mirror_busy.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  ++t_detached_in_flight;
  auto run = [](Worker& w, std::shared_ptr<SideRequest> r) -> awaitable<void> {
    SideResponse res = co_await side_exchange(w, *r);
    if (res.status) {
      g_mirror_answered.fetch_add(1, std::memory_order_relaxed);
    } else {
      g_mirror_failed.fetch_add(1, std::memory_order_relaxed);
      log::info("proxy-mirror: copy to {}:{} not answered: {}", r->host, r->port, res.error);
    }
  };
  asio::co_spawn(w.io(), run(w, std::move(r)), [](std::exception_ptr e) {
    --t_detached_in_flight;
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        g_mirror_failed.fetch_add(1, std::memory_order_relaxed);
        log::error("proxy-mirror: side request failed: {}", ex.what());
      }
    }
  });
}

void count_mirror_body_too_large() { g_mirror_too_large.fetch_add(1, std::memory_order_relaxed); }

std::string side_requests_prometheus() {
  return fmt::format(
      "# HELP holdfast_proxy_mirror_requests_total Copies proxy-mirror sent, by outcome (answered: the mirror "
      "responded; failed: error or timeout)\n# TYPE holdfast_proxy_mirror_requests_total counter\n"
      "holdfast_proxy_mirror_requests_total{{result=\"answered\"}} {}\n"
      "holdfast_proxy_mirror_requests_total{{result=\"failed\"}} {}\n"
      "# HELP holdfast_proxy_mirror_dropped_total Copies proxy-mirror did not send: the request body exceeded the "
      "bound (reason=\"body_too_large\") or the worker had too many copies in flight (reason=\"in_flight\")\n"
      "# TYPE holdfast_proxy_mirror_dropped_total counter\n"
      "holdfast_proxy_mirror_dropped_total{{reason=\"body_too_large\"}} {}\n"
      "holdfast_proxy_mirror_dropped_total{{reason=\"in_flight\"}} {}\n",
      g_mirror_answered.load(std::memory_order_relaxed), g_mirror_failed.load(std::memory_order_relaxed),
      g_mirror_too_large.load(std::memory_order_relaxed), g_mirror_busy.load(std::memory_order_relaxed));
}

}  // namespace holdfast::proxy
