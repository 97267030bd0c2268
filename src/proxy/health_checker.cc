#include "proxy/health_checker.h"

#include <fmt/format.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <unordered_set>

#include "core/log.h"
#include "http/codec.h"
#include "tls/client_context.h"

namespace holdfast::proxy {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using http::ParseError;
using http::ParseStatus;
using http::ResponseHead;
using http::parse_response;
using upstream::NodeHealth;
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

// Each loop lists its wait timer and each probe its socket while they run
// (control thread only), so that stop() can end them at once.
struct HealthChecker::Live {
  std::unordered_set<asio::steady_timer*> waits;
  std::unordered_set<tcp::socket*> probes;
};

namespace {

template <typename T>
struct Listed {
  std::unordered_set<T*>& set;
  T* item;
  Listed(std::unordered_set<T*>& s, T* i) : set(s), item(i) { set.insert(item); }
  ~Listed() { set.erase(item); }
};

enum class Outcome { success, http_failure, tcp_failure, timeout, neutral };

// The HTTP part of a probe: GET the path, read the status line.
template <typename S>
asio::awaitable<Outcome> http_probe(S& s, const model::HealthCheckConfig& hc, const std::string& host,
                                    const bool& timed_out) {
  std::string req = fmt::format("GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: holdfast-health-check\r\n", hc.http_path, host);
  for (const auto& h : hc.req_headers) req += h + "\r\n";
  req += "\r\n";
  auto [wec, wn] = co_await asio::async_write(s, asio::buffer(req), tok);
  if (wec) co_return timed_out ? Outcome::timeout : Outcome::tcp_failure;
  std::string buf(4096, '\0');
  size_t got = 0;
  for (;;) {
    auto [rec, n] = co_await s.async_read_some(asio::buffer(buf.data() + got, buf.size() - got), tok);
    if (rec && n == 0) co_return timed_out ? Outcome::timeout : Outcome::tcp_failure;
    got += n;
    ResponseHead head;
    ParseError perr;
    auto st = parse_response(std::string_view(buf.data(), got), "GET", head, perr);
    if (st == ParseStatus::complete) {
      auto in = [&](const std::vector<int>& v) { return std::find(v.begin(), v.end(), head.status) != v.end(); };
      if (in(hc.healthy_statuses)) co_return Outcome::success;
      if (in(hc.unhealthy_statuses)) co_return Outcome::http_failure;
      co_return Outcome::neutral;
    }
    if (st == ParseStatus::error || got == buf.size()) co_return Outcome::http_failure;
  }
}

// One probe: connect (for https a TLS handshake too; for http and https GET
// the path and read the status line), all within `timeout` seconds. The
// timer closes the socket to abort.
asio::awaitable<Outcome> probe(const model::HealthCheckConfig& hc, const model::UpstreamNode& node,
                               const tcp::endpoint& node_ep, std::shared_ptr<tls::ClientContext> tls_ctx,
                               std::shared_ptr<HealthChecker::Live> live) {
  auto ex = co_await asio::this_coro::executor;
  tcp::socket sock(ex);
  tcp::socket* open = &sock;  // what the timer closes (the TLS stream takes the socket over)
  Listed<tcp::socket> listed(live->probes, &sock);
  asio::steady_timer timer(ex);
  bool timed_out = false;
  timer.expires_after(std::chrono::milliseconds(static_cast<int64_t>(hc.timeout * 1000)));
  timer.async_wait([&](boost::system::error_code ec) {
    if (ec) return;
    timed_out = true;
    boost::system::error_code ignored;
    open->close(ignored);
  });
  // The address the proxy uses (resolved with the snapshot), on the check's port.
  const tcp::endpoint ep(node_ep.address(), hc.port ? hc.port : node.port);
  auto [cec] = co_await sock.async_connect(ep, tok);
  if (cec) { timer.cancel(); co_return timed_out ? Outcome::timeout : Outcome::tcp_failure; }
  if (hc.type == "tcp") { timer.cancel(); co_return Outcome::success; }
  const std::string host = hc.host.empty() ? node.host : hc.host;
  Outcome o;
  if (hc.type == "https") {
    if (!tls_ctx) { timer.cancel(); co_return Outcome::tcp_failure; }  // its context did not build (logged)
    asio::ssl::stream<tcp::socket> ts(std::move(sock), tls_ctx->ctx);
    open = &ts.next_layer();
    Listed<tcp::socket> listed_tls(live->probes, open);
    if (!tls::prepare_client(ts.native_handle(), *tls_ctx, tls::sni_for_host(host), ep.address().to_string())) {
      timer.cancel();
      co_return Outcome::tcp_failure;
    }
    auto [hec] = co_await ts.async_handshake(asio::ssl::stream_base::client, tok);
    if (hec) { timer.cancel(); co_return timed_out ? Outcome::timeout : Outcome::tcp_failure; }
    o = co_await http_probe(ts, hc, host, timed_out);
    open = &sock;  // ts ends with this block
  } else {
    o = co_await http_probe(sock, hc, host, timed_out);
  }
  timer.cancel();
  co_return o;
}

void record(NodeHealth& h, Outcome o, const model::HealthCheckConfig& hc, const std::string& what) {
  switch (o) {
    case Outcome::success:
      h.http_failures = h.tcp_failures = h.timeouts = 0;
      if (!h.healthy && ++h.successes >= hc.healthy_successes) {
        h.healthy = true;
        h.successes = 0;
        log::info("health check: {} is healthy again", what);
      }
      return;
    case Outcome::neutral: return;
    case Outcome::http_failure:
    case Outcome::tcp_failure:
    case Outcome::timeout: break;
  }
  h.successes = 0;
  bool bad = (o == Outcome::http_failure && ++h.http_failures >= hc.http_failures) ||
             (o == Outcome::tcp_failure && ++h.tcp_failures >= hc.tcp_failures) ||
             (o == Outcome::timeout && ++h.timeouts >= hc.timeouts);
  if (bad && h.healthy.exchange(false)) {
    const char* why = o == Outcome::http_failure ? "http failures" : o == Outcome::timeout ? "timeouts" : "tcp failures";
    log::warn("health check: {} marked unhealthy ({})", what, why);
  }
}

asio::awaitable<void> check_loop(std::shared_ptr<snapshot::CompiledUpstream> up, size_t node,
                                 std::shared_ptr<uint64_t> generation, uint64_t mine,
                                 std::shared_ptr<HealthChecker::Live> live) {
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer t(ex);
  Listed<asio::steady_timer> listed(live->waits, &t);
  const model::HealthCheckConfig& hc = *up->conf->checks;
  const model::UpstreamNode& n = up->conf->nodes[node];
  const std::string what = fmt::format("upstream {} node {}:{}", up->key, n.host, n.port);
  while (*generation == mine) {
    // A name without an address yet is not probed: the node is unusable
    // anyway, and the snapshot that brings its address restarts this loop.
    if (!up->endpoints[node]) break;
    Outcome o = co_await probe(hc, n, *up->endpoints[node], up->check_tls, live);
    if (*generation != mine) break;
    NodeHealth& h = up->balancer->health(static_cast<int>(node));
    record(h, o, hc, what);
    double interval = h.healthy ? hc.healthy_interval : hc.unhealthy_interval;
    t.expires_after(std::chrono::milliseconds(static_cast<int64_t>(interval * 1000)));
    co_await t.async_wait(tok);
  }
}

}  // namespace

HealthChecker::HealthChecker(asio::io_context& io) : io_(io), live_(std::make_shared<Live>()) {}

void HealthChecker::stop() {
  stopped_ = true;
  ++*generation_;
  for (auto* t : live_->waits) t->cancel();
  boost::system::error_code ec;
  for (auto* s : live_->probes) s->close(ec);
}

void HealthChecker::update(std::shared_ptr<const snapshot::Snapshot> snap) {
  if (stopped_) return;
  uint64_t mine = ++*generation_;
  std::vector<std::shared_ptr<snapshot::CompiledUpstream>> ups;
  for (const auto& [id, u] : snap->upstreams) ups.push_back(u);
  for (const auto& r : snap->routes)
    if (r.upstream && r.upstream->key.rfind("upstreams/", 0) != 0) ups.push_back(r.upstream);
  for (const auto& u : snap->split_upstreams) ups.push_back(u);
  std::sort(ups.begin(), ups.end());
  ups.erase(std::unique(ups.begin(), ups.end()), ups.end());
  for (const auto& u : ups) {
    if (!u->conf->checks || !u->conf->checks->active) continue;
    for (size_t i = 0; i < u->conf->nodes.size(); ++i)
      asio::co_spawn(io_, check_loop(u, i, generation_, mine, live_), asio::detached);
  }
}

}  // namespace holdfast::proxy
