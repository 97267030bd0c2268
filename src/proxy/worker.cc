#include "proxy/worker.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <openssl/err.h>
#include <sys/socket.h>

#include <cerrno>

#include "core/log.h"
#include "proxy/access_log.h"
#include "proxy/pipeline.h"
#include "proxy/upstream_h2.h"
#include "tls/server_context.h"
#include "transport/h2_server.h"
#include "transport/io.h"
#include "transport/tls_stream.h"

#if defined(BOOST_ASIO_HAS_IO_URING)
#include <liburing.h>

// Asio 1.81 creates its rings with no setup flags. IORING_SETUP_COOP_TASKRUN
// (Linux 5.19+) lets completions wait for our next io_uring_enter instead of
// interrupting the thread with task-work IPIs, which cost several percent of
// the CPU per request on this VM. This definition takes precedence over
// liburing's for the calls Asio's inline code makes; on older kernels the
// flag is refused and the ring is created as before.
extern "C" int io_uring_queue_init(unsigned entries, struct io_uring* ring, unsigned flags) {
  struct io_uring_params p {};
  p.flags = flags | IORING_SETUP_COOP_TASKRUN;
  int r = io_uring_queue_init_params(entries, ring, &p);
  if (r == -EINVAL) {
    p = {};
    p.flags = flags;
    r = io_uring_queue_init_params(entries, ring, &p);
  }
  return r;
}
#endif

namespace holdfast::proxy {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

Worker::Worker(int id, const NodeConfig& cfg, std::shared_ptr<AccessLog> access_log)
    : id_(id), cfg_(cfg), access_log_(std::move(access_log)),
      capacity_(std::make_unique<asio::steady_timer>(io_, std::chrono::steady_clock::time_point::max())) {}

bool idle_connection_usable(int fd) {
  char c;
  ssize_t n = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

Worker::~Worker() { join(); }

void Worker::open_listener(const ListenAddr& a, bool tls) {
  auto acc = std::make_unique<tcp::acceptor>(io_);
  tcp::endpoint ep(asio::ip::make_address(a.ip), a.port);
  acc->open(ep.protocol());
  acc->set_option(tcp::acceptor::reuse_address(true));
  int one = 1;
  // Each worker binds its own listener; the kernel spreads connections.
  if (::setsockopt(acc->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
    throw std::runtime_error("SO_REUSEPORT failed");
  acc->bind(ep);
  acc->listen(4096);
  acceptors_.push_back(std::move(acc));
  acceptor_tls_.push_back(tls);
}

void Worker::listen(const std::vector<ListenAddr>& addrs) {
  for (const auto& a : addrs) open_listener(a, false);
}

void Worker::listen_tls(const std::vector<ListenAddr>& addrs, std::shared_ptr<asio::ssl::context> ctx) {
  tls_ctx_ = std::move(ctx);
  for (const auto& a : addrs) open_listener(a, true);
}

uint16_t Worker::bound_port(size_t i) const { return acceptors_.at(i)->local_endpoint().port(); }

void Worker::start() {
  for (size_t i = 0; i < acceptors_.size(); ++i)
    asio::co_spawn(io_, accept_loop(*acceptors_[i], acceptor_tls_[i]), [](std::exception_ptr e) {
      if (e) try { std::rethrow_exception(e); } catch (const std::exception& ex) { log::error("accept loop: {}", ex.what()); }
    });
  asio::co_spawn(io_, sweeper(), asio::detached);
  thread_ = std::thread([this] {
    try {
      io_.run();
    } catch (const std::exception& e) {
      log::error("worker {} stopped: {}", id_, e.what());
    }
    stopped_.set_value();
  });
}

bool Worker::wait_stopped(std::chrono::milliseconds timeout) {
  return !thread_.joinable() || stopped_future_.wait_for(timeout) == std::future_status::ready;
}

void Worker::abort() { io_.stop(); }

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::publish(std::shared_ptr<const snapshot::Snapshot> snap) {
  asio::post(io_, [this, s = std::move(snap)]() mutable { snapshot_ = std::move(s); });
}

// Both on the worker thread: closes the listeners and the upstream pool and
// wakes accept loops held at the cap; the sweep then ends idle connections
// (drain) or every watched socket (stop).
void Worker::begin_shutdown(bool stopping) {
  stopping_ = stopping_ || stopping;
  draining_ = true;
  for (auto& acc : acceptors_) {
    boost::system::error_code ec;
    acc->close(ec);
  }
  clear_pool();
  capacity_->cancel();
  sweep();
}

void Worker::drain() {
  asio::post(io_, [this] { begin_shutdown(false); });
}

void Worker::stop() {
  asio::post(io_, [this] { begin_shutdown(true); });
}

// Pooled connections leave the deadline list before they are freed.
void Worker::clear_pool() {
  for (auto& [key, v] : pool_)
    for (auto& c : v) unwatch(&c->timed);
  pool_.clear();
}

void Worker::watch(Timed* t) {
  t->prev = nullptr;
  t->next = timed_head_;
  if (timed_head_) timed_head_->prev = t;
  timed_head_ = t;
}

void Worker::unwatch(Timed* t) {
  if (t->prev) t->prev->next = t->next;
  else if (timed_head_ == t) timed_head_ = t->next;
  if (t->next) t->next->prev = t->prev;
  t->prev = t->next = nullptr;
}

void Worker::sweep() {
  const int64_t now = now_ms();
  for (Timed* t = timed_head_; t; t = t->next) {
    if (stopping_) {
      // Closed rather than cancelled: an operation its coroutine starts
      // next fails at once, so every connection runs to its end.
      if (t->stream && t->stream->is_open()) {
        t->fired = true;
        t->stream->close();
      }
      continue;
    }
    bool expired = t->deadline && now >= t->deadline;
    if ((expired || (draining_ && (t->idle || t->tunnel))) && !t->fired && t->stream) {
      t->fired = true;
      t->stream->cancel();
    }
  }
  // Idle pooled connections are also checked for a FIN or stray bytes here,
  // so that a closed one does not hold its descriptor until it is taken.
  for (auto it = pool_.begin(); it != pool_.end();) {
    auto& v = it->second;
    v.erase(std::remove_if(v.begin(), v.end(),
                           [&](const std::unique_ptr<UpstreamConn>& c) {
                             if (now - c->idle_since < c->idle_timeout_ms &&
                                 idle_connection_usable(c->socket().native_handle()))
                               return false;
                             unwatch(&c->timed);
                             return true;
                           }),
            v.end());
    it = v.empty() ? pool_.erase(it) : std::next(it);
  }
}

asio::awaitable<void> Worker::sweeper() {
  asio::steady_timer t(io_);
  // After stop() it keeps closing what connections still open (a retry's
  // new upstream socket) until the last connection has ended.
  while (!stopping_ || open_conns_.load(std::memory_order_relaxed) > 0) {
    t.expires_after(std::chrono::milliseconds(stopping_ ? 10 : 100));
    co_await t.async_wait(tok);
    sweep();
  }
}

void Worker::log_throttled(int64_t& last_ms, const std::string& msg) {
  const int64_t now = now_ms();
  if (now - last_ms < 60'000) return;
  last_ms = now;
  log::warn("{}", msg);
}

void Worker::connection_closed() {
  if (open_conns_.load(std::memory_order_relaxed) < cfg_.worker_connections) capacity_->cancel();
}

void Worker::shed_idle() {
  for (Timed* t = timed_head_; t; t = t->next) {
    if (t->reusable && !t->fired && t->stream) {
      t->fired = true;
      t->stream->cancel();
    }
  }
  clear_pool();
}

// At the connection cap the worker stops accepting: further clients wait in
// the listen backlog (as with nginx) until a connection closes.
asio::awaitable<void> Worker::wait_for_capacity() {
  while (open_conns_.load(std::memory_order_relaxed) >= cfg_.worker_connections && !draining_) {
    log_throttled(cap_logged_ms_, fmt::format("worker {}: {} worker_connections are not enough; not accepting until "
                                              "a connection closes", id_, cfg_.worker_connections));
    shed_idle();
    // The timer never expires: connection_closed() and drain() cancel it,
    // which wakes every waiting accept loop (one per listener) at once.
    co_await capacity_->async_wait(tok);
  }
}

asio::awaitable<void> Worker::accept_loop(tcp::acceptor& acc, bool tls) {
  for (;;) {
    co_await wait_for_capacity();
    if (!acc.is_open()) co_return;
    auto [ec, sock] = co_await acc.async_accept(tok);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acc.is_open()) co_return;
      // Out of descriptors: keep serving the open connections, give up idle
      // ones, and pause accepting instead of spinning on the error.
      if (ec == asio::error::no_descriptors || ec.value() == ENFILE) {
        log_throttled(fd_logged_ms_, fmt::format("worker {}: accept: {}; closing idle connections", id_, ec.message()));
        shed_idle();
      } else {
        log::warn("accept failed: {}", ec.message());
      }
      asio::steady_timer t(io_);
      t.expires_after(std::chrono::milliseconds(100));
      co_await t.async_wait(tok);
      continue;
    }
    open_conns_++;  // counted here, so the next wait_for_capacity sees it
    accepted_total_.fetch_add(1, std::memory_order_relaxed);
    auto serve_it = tls ? serve_tls(std::move(sock)) : serve_plain(std::move(sock));
    asio::co_spawn(io_, std::move(serve_it), [](std::exception_ptr e) {
      if (e) try { std::rethrow_exception(e); } catch (const std::exception& ex) { log::error("connection: {}", ex.what()); }
    });
  }
}

namespace {
// A field the client sent, unchecked, for an access log line: as nginx
// writes variables there, '"', '\\', control bytes and bytes past ASCII
// become \xHH, and it is bounded.
std::string log_escaped(std::string_view v) {
  std::string out;
  for (unsigned char c : v.substr(0, 2048)) {
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') out += fmt::format("\\x{:02X}", c);
    else out += static_cast<char>(c);
  }
  return out;
}

// An HTTP/2 connection (h2c prior knowledge or ALPN h2): one session, each
// stream running the pipeline with `info` marked http2. The connection is
// counted out here, once.
asio::awaitable<void> serve_http2(Worker& w, transport::Stream& stream, const ConnInfo& conn_info,
                                  std::string_view already) {
  ConnInfo info = conn_info;
  info.http2 = true;
  const NodeConfig& cfg = w.cfg();
  transport::H2Options opts;
  opts.http2 = cfg.http2;
  opts.keepalive_timeout = cfg.keepalive_timeout;
  opts.header_timeout = cfg.client_header_timeout;
  opts.send_timeout = cfg.send_timeout;
  transport::H2Hooks hooks;
  hooks.serve = [&w, &info](transport::H2Stream& s) { return serve(w, s, info); };
  hooks.watch = [&w](Timed* t) { w.watch(t); };
  hooks.unwatch = [&w](Timed* t) { w.unwatch(t); };
  hooks.draining = [&w] { return w.draining(); };
  // The session's own 400/405/431 are counted and logged as the pipeline's
  // answers are (the access log line of Connection::run_log).
  hooks.rejected = [&w, &info](std::string_view method, std::string_view path, std::string_view ua, int status) {
    w.requests_total_.fetch_add(1, std::memory_order_relaxed);
    AccessLog* al = w.access_log();
    if (al && al->enabled())
      al->append(fmt::format("{} - - \"{} {} HTTP/2.0\" {} 0 0.000 \"{}\" route=-", info.remote_ip,
                             log_escaped(method), log_escaped(path), status, log_escaped(ua)));
  };
  try {
    co_await transport::serve_h2(w.io(), stream, already, opts, hooks);
  } catch (const std::exception& e) {
    log::error("HTTP/2 connection from {}:{} failed: {}", info.remote_ip, info.remote_port, e.what());
  }
  stream.close();
  w.open_conns_--;
  w.connection_closed();
}
}  // namespace

// A plain-TCP client connection: the pipeline runs on the socket itself.
// With HTTP/2 on, the first bytes decide (as nginx >= 1.25): the HTTP/2
// connection preface means h2c with prior knowledge, anything else is
// HTTP/1.1 and goes to the pipeline with the bytes already read.
asio::awaitable<void> Worker::serve_plain(tcp::socket sock) {
  boost::system::error_code ec;
  sock.set_option(tcp::no_delay(true), ec);
  const ConnInfo info = tcp_conn_info(sock);
  transport::TcpStream stream(std::move(sock));
  if (!cfg_.http2.enable) {
    co_await serve(*this, stream, info);
    co_return;
  }
  transport::Buf first;
  first.data.resize(4096);
  Timed t;
  t.stream = &stream;
  t.idle = true;  // a drain does not wait for a connection that said nothing
  watch(&t);
  const int64_t deadline = now_ms() + transport::ms(cfg_.client_header_timeout);
  bool ok = true;
  while (first.avail() < transport::kH2Preface.size() &&
         transport::kH2Preface.starts_with(std::string_view(first.data.data(), first.avail()))) {
    bool timed_out = false;
    size_t n = co_await transport::read_some_until(stream, t, first, deadline, ec, timed_out);
    if (ec || n == 0) {
      ok = false;
      break;
    }
  }
  unwatch(&t);
  const std::string_view got(first.data.data(), first.avail());
  if (!ok) {
    stream.close();
    open_conns_--;
    connection_closed();
  } else if (got.starts_with(transport::kH2Preface)) {
    co_await serve_http2(*this, stream, info, got);
  } else {
    co_await serve(*this, stream, info, got);
  }
}

namespace {
tls::HandshakeFailure handshake_failure(SSL* ssl, bool timed_out, const boost::system::error_code& ec) {
  if (timed_out) return tls::HandshakeFailure::timeout;
  if (auto f = tls::selection_failure(ssl)) return *f;
  if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated || ec == asio::error::connection_reset ||
      ec == asio::error::broken_pipe)
    return tls::HandshakeFailure::closed;
  if (SSL_get_verify_result(ssl) != X509_V_OK ||
      (ec.category() == asio::error::get_ssl_category() &&
       ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE))
    return tls::HandshakeFailure::client_certificate;
  return tls::HandshakeFailure::protocol;
}
}  // namespace

// A TLS client connection: the handshake (bounded by client_header_timeout,
// ended by a drain), then the same pipeline on the decrypted stream.
asio::awaitable<void> Worker::serve_tls(tcp::socket sock) {
  boost::system::error_code ec;
  sock.set_option(tcp::no_delay(true), ec);
  ConnInfo info = tcp_conn_info(sock);
  info.scheme = "https";
  transport::TlsStream stream(std::move(sock), *tls_ctx_);
  static const auto kNoCertificates = tls::CertTable::build(nullptr);
  const auto& table = snapshot_ && snapshot_->certificates ? snapshot_->certificates : kNoCertificates;
  bool ok = tls::attach_table(stream.native(), table);
  if (ok) {
    Timed t;
    t.stream = &stream;
    t.idle = true;  // a drain does not wait for a handshake
    t.deadline = now_ms() + transport::ms(cfg_.client_header_timeout);
    watch(&t);
    ec = co_await stream.handshake(asio::ssl::stream_base::server);
    unwatch(&t);
    ok = !ec;
    if (ec) {
      // Debug only, and counted: scanners and aborted connections must not
      // be able to fill the log.
      log::debug("TLS handshake from {}:{} failed: {}", info.remote_ip, info.remote_port,
                 t.fired ? "timed out" : ec.message());
      if (tls::ServerContext* sc = tls::ServerContext::of(stream.native()))
        sc->count_failure(handshake_failure(stream.native(), t.fired, ec));
    } else if (tls::ServerContext* sc = tls::ServerContext::of(stream.native())) {
      sc->count_handshake(stream.native());
    }
  }
  if (ok) {
    if (const tls::Selection* sel = tls::selection(stream.native())) {
      info.server_name = sel->server_name;
      auto t = std::make_shared<TlsConnInfo>();
      auto peer = tls::peer_certificate(stream.native());
      // nginx's $ssl_server_name is what the client sent: empty when
      // fallback_sni stood in (the mTLS checks use info.server_name).
      if (!sel->fallback) t->vars.server_name = sel->server_name;
      t->vars.client_verify = std::move(peer.verify);
      t->vars.client_s_dn = std::move(peer.subject);
      t->vars.client_serial = std::move(peer.serial);
      t->object = sel->object;
      t->certificates = table;
      t->session_sni_mismatch = tls::resumed_from_other_sni(stream.native());
      info.tls = std::move(t);
    }
    const unsigned char* alpn = nullptr;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(stream.native(), &alpn, &alpn_len);
    if (alpn_len == 2 && alpn[0] == 'h' && alpn[1] == '2') co_await serve_http2(*this, stream, info, {});
    else co_await serve(*this, stream, info);  // closes the stream and counts the connection out
    co_return;
  }
  stream.close();
  open_conns_--;
  connection_closed();
}

std::unique_ptr<UpstreamConn> Worker::take_pooled(const std::string& key) {
  auto it = pool_.find(key);
  if (it == pool_.end()) return nullptr;
  while (!it->second.empty()) {
    auto c = std::move(it->second.back());
    it->second.pop_back();
    // The origin closed it, reset it, or sent bytes nobody asked for (a body
    // to a HEAD, a second response) while it was idle: never reuse it.
    if (idle_connection_usable(c->socket().native_handle())) return c;
    unwatch(&c->timed);
  }
  return nullptr;
}

SSL_SESSION* Worker::tls_session(const std::string& key) const {
  auto it = tls_sessions_.find(key);
  if (it == tls_sessions_.end() || !SSL_SESSION_is_resumable(it->second.get())) return nullptr;
  return it->second.get();
}

void Worker::keep_tls_session(const std::string& key, SSL_SESSION* s) {
  if (!s) return;
  std::shared_ptr<SSL_SESSION> given(s, SSL_SESSION_free);
  if (!SSL_SESSION_is_resumable(s)) return;
  // A copy: OpenSSL marks a connection's own session not resumable when the
  // connection ends without a close_notify, which is how pooled upstream
  // connections end.
  SSL_SESSION* copy = SSL_SESSION_dup(s);
  if (!copy) return;
  std::shared_ptr<SSL_SESSION> owned(copy, SSL_SESSION_free);
  // Keys follow Host headers under pass_host: pass, so the table is bounded
  // by starting over rather than growing with every name a client sends.
  if (tls_sessions_.size() >= 1024 && !tls_sessions_.count(key)) tls_sessions_.clear();
  tls_sessions_[key] = std::move(owned);
}

H2Pool& Worker::h2_pool() {
  if (!h2_pool_) h2_pool_ = std::make_unique<H2Pool>(*this);
  return *h2_pool_;
}

void Worker::give_back(const std::string& key, std::unique_ptr<UpstreamConn> c, int pool_size) {
  auto& v = pool_[key];
  if (stopping_ || static_cast<int>(v.size()) >= pool_size) {
    unwatch(&c->timed);
    return;
  }
  c->buf.begin = c->buf.end = 0;
  v.push_back(std::move(c));
}

}  // namespace holdfast::proxy
