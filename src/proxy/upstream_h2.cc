#include "proxy/upstream_h2.h"

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cstring>

#include "core/log.h"
#include "http/grpc.h"
#include "proxy/worker.h"
#include "tls/client_context.h"
#include "transport/io.h"
#include "transport/tls_stream.h"

namespace holdfast::proxy {
namespace asio = boost::asio;
using asio::awaitable;
using boost::system::error_code;
using transport::now_ms;
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

namespace {
// Flow control: a stream's response is bounded by its window (consumed as
// the pipeline reads), the connection's by the connection window.
constexpr int32_t kStreamWindow = 256 * 1024;
constexpr int32_t kConnWindow = 4 * 1024 * 1024;
// The response header list the origin is told (SETTINGS_MAX_HEADER_LIST_SIZE).
constexpr uint32_t kMaxResponseHeaderList = 64 * 1024;
// Request payload a call may hold before its writer waits for nghttp2.
constexpr size_t kMaxPending = 64 * 1024;
constexpr size_t kWriteBatch = 64 * 1024;
// Streams assumed allowed until the peer's SETTINGS say otherwise.
constexpr uint32_t kInitialPeerStreams = 100;
}  // namespace

// --- H2Waiter ---------------------------------------------------------------

void H2Waiter::wake() {
  signaled_ = true;
  if (waiting_) timer_.cancel();
}

void H2Waiter::cancel() {
  if (!waiting_) return;
  cancelled_ = true;
  timer_.cancel();
}

awaitable<H2Waiter::Woke> H2Waiter::wait(int64_t deadline_ms) {
  if (signaled_) {
    signaled_ = false;
    co_return Woke::signal;
  }
  if (deadline_ms) timer_.expires_at(std::chrono::steady_clock::time_point(std::chrono::milliseconds(deadline_ms)));
  else timer_.expires_at(std::chrono::steady_clock::time_point::max());
  waiting_ = true;
  auto [ec] = co_await timer_.async_wait(tok);
  waiting_ = false;
  if (cancelled_) {
    cancelled_ = false;
    co_return Woke::cancel;
  }
  if (signaled_) {
    signaled_ = false;
    co_return Woke::signal;
  }
  co_return ec ? Woke::signal : Woke::timeout;
}

// --- H2Session --------------------------------------------------------------

// One HTTP/2 connection to an upstream node. A reader coroutine feeds
// nghttp2_session_mem_recv; one writer drains nghttp2_session_mem_send.
// Calls (H2ClientStream) hold it by shared_ptr and find nghttp2 only
// through it; nghttp2 finds a call through the stream's user data, which a
// call clears before it goes away.
class H2Session : public std::enable_shared_from_this<H2Session> {
 public:
  enum class State : uint8_t { connecting, ready, closed };

  H2Session(Worker& w, H2Pool& pool, std::string key, int max_streams, int64_t idle_ms)
      : w_(w), pool_(&pool), key_(std::move(key)), max_streams_(max_streams), idle_ms_(idle_ms),
        ready_(w.io().get_executor()), tcp_(w.io()), wake_(w.io().get_executor()) {
    io_ = &tcp_;
    timed_.stream = io_;
    w_.watch(&timed_);
    ready_.expires_at(std::chrono::steady_clock::time_point::max());
  }
  ~H2Session() {
    if (ng_) nghttp2_session_del(ng_);
  }

  awaitable<void> connect(const H2Target& t);
  // Room for one more call.
  bool usable() const {
    if (state_ == State::closed || goaway_ || timed_.fired || opened_ >= max_streams_) return false;
    uint32_t cap = ng_ ? nghttp2_session_get_remote_settings(ng_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
                       : assumed_cap_;
    if (ng_ && nghttp2_session_get_next_stream_id(ng_) > (1u << 30)) return false;
    return calls_.size() + reserved_ < cap;
  }
  void kick() { wake_.wake(); }
  void close(const char* why);
  void attach(H2ClientStream* c) {
    calls_.push_back(c);
    ++opened_;
    timed_.idle = timed_.reusable = false;
    timed_.deadline = 0;
  }
  void detach(H2ClientStream* c);

  nghttp2_session* ng() const { return state_ == State::closed ? nullptr : ng_; }

  Worker& w_;
  H2Pool* pool_;  // null once removed from it
  std::string key_;
  State state_ = State::connecting;
  int fail_status_ = 502;
  bool timed_out_ = false;
  bool goaway_ = false;
  int reserved_ = 0;  // calls waiting for the connection to be ready
  // The peer's stream cap until its SETTINGS arrive: what the node's last
  // connection announced, else kInitialPeerStreams.
  uint32_t assumed_cap_ = kInitialPeerStreams;
  int opened_ = 0;
  int max_streams_;
  int64_t idle_ms_;
  double send_timeout_ = 60;
  std::string upstream_, node_;
  asio::steady_timer ready_;  // cancelled when connecting ends

 private:
  bool start_session();
  awaitable<void> reader(std::shared_ptr<H2Session> self);
  awaitable<void> writer(std::shared_ptr<H2Session> self);
  void idle_check();
  static H2ClientStream* call_of(nghttp2_session* s, int32_t id) {
    return static_cast<H2ClientStream*>(nghttp2_session_get_stream_user_data(s, id));
  }
  static int on_header(nghttp2_session*, const nghttp2_frame*, const uint8_t*, size_t, const uint8_t*, size_t,
                       uint8_t, void*);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame*, void*);
  static int on_data_chunk(nghttp2_session*, uint8_t, int32_t, const uint8_t*, size_t, void*);
  static int on_stream_close(nghttp2_session*, int32_t, uint32_t, void*);

 public:
  static ssize_t read_data(nghttp2_session*, int32_t, uint8_t*, size_t, uint32_t*, nghttp2_data_source*, void*);

 private:
  transport::TcpStream tcp_;
  std::unique_ptr<transport::TlsStream> tls_;
  transport::Stream* io_;
  transport::Timed timed_;
  nghttp2_session* ng_ = nullptr;
  std::vector<H2ClientStream*> calls_;
  std::vector<char> rbuf_;
  std::string wbuf_;
  H2Waiter wake_;
};

awaitable<void> H2Session::connect(const H2Target& t) {
  upstream_ = std::string(t.upstream);
  node_ = std::string(t.node) + ":" + std::to_string(t.port);
  send_timeout_ = t.send_timeout;
  timed_.fired = false;
  timed_.deadline = now_ms() + transport::ms(t.connect_timeout);
  auto [cec] = co_await tcp_.socket().async_connect(t.endpoint, tok);
  const char* failed = nullptr;
  std::string why;
  if (cec) {
    failed = "connect";
    why = timed_.fired ? "timed out" : cec.message();
  } else {
    tcp_.socket().set_option(asio::ip::tcp::no_delay(true), cec);
    if (t.tls) {
      tls_ = std::make_unique<transport::TlsStream>(std::move(tcp_.socket()), t.tls->ctx);
      io_ = tls_.get();
      timed_.stream = io_;
      SSL* ssl = tls_->native();
      static constexpr unsigned char kAlpn[] = {2, 'h', '2'};
      error_code hec = asio::error::no_memory;
      if (tls::prepare_client(ssl, *t.tls, t.sni, t.host) && SSL_set_alpn_protos(ssl, kAlpn, sizeof kAlpn) == 0) {
        if (SSL_SESSION* sess = w_.tls_session(t.key)) SSL_set_session(ssl, sess);
        hec = co_await tls_->handshake(asio::ssl::stream_base::client);
      }
      if (hec) {
        failed = "TLS handshake";
        why = timed_.fired ? "timed out" : hec.message();
        if (long vr = SSL_get_verify_result(ssl); vr != X509_V_OK)
          why = std::string("certificate verify failed: ") + X509_verify_cert_error_string(vr);
      } else {
        const unsigned char* proto = nullptr;
        unsigned len = 0;
        SSL_get0_alpn_selected(ssl, &proto, &len);
        if (len != 2 || std::memcmp(proto, "h2", 2) != 0) {
          failed = "TLS handshake";
          why = "the upstream did not select HTTP/2 (ALPN h2)";
        } else {
          w_.keep_tls_session(t.key, SSL_get1_session(ssl));
        }
      }
    }
  }
  timed_.deadline = 0;
  if (!failed && state_ == State::connecting && !start_session()) {
    failed = "HTTP/2 session";
    why = "out of memory";
  }
  if (failed || state_ != State::connecting) {
    timed_out_ = timed_.fired;
    fail_status_ = timed_out_ ? 504 : 502;
    log::warn("upstream {}: {} to {} failed: {}", upstream_, failed ? failed : "connect", node_,
              failed ? why : "closed");
    close("connect failed");
  } else {
    state_ = State::ready;
    auto self = shared_from_this();
    asio::co_spawn(w_.io(), reader(self), asio::detached);
    asio::co_spawn(w_.io(), writer(self), asio::detached);
  }
  ready_.cancel();
}

bool H2Session::start_session() {
  nghttp2_session_callbacks* cbs = nullptr;
  if (nghttp2_session_callbacks_new(&cbs) != 0) return false;
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) {
    nghttp2_session_callbacks_del(cbs);
    return false;
  }
  // Window updates follow what the pipeline has read, not what arrived.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_peer_max_concurrent_streams(opt, assumed_cap_);
  int rv = nghttp2_session_client_new2(&ng_, cbs, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) {
    ng_ = nullptr;
    return false;
  }
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, kMaxResponseHeaderList},
  };
  nghttp2_submit_settings(ng_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(ng_, NGHTTP2_FLAG_NONE, 0, kConnWindow);
  rbuf_.resize(16 * 1024);
  return true;
}

void H2Session::close(const char* why) {
  if (state_ == State::closed) return;
  state_ = State::closed;
  if (pool_) pool_->remove(key_, this);
  pool_ = nullptr;
  w_.unwatch(&timed_);
  io_->close();
  wake_.wake();
  // Calls end with an error unless their response was complete.
  auto calls = calls_;
  for (auto* c : calls) c->on_session_end();
  (void)why;
}

void H2Session::detach(H2ClientStream* c) {
  auto it = std::find(calls_.begin(), calls_.end(), c);
  if (it != calls_.end()) {
    *it = calls_.back();
    calls_.pop_back();
  }
  idle_check();
}

// Without calls: a connection that takes no more streams (GOAWAY, its
// keepalive_requests used up) or belongs to a draining worker closes; any
// other stays for keepalive_timeout (the sweeper cancels it then).
void H2Session::idle_check() {
  if (state_ != State::ready || !calls_.empty() || reserved_) return;
  if (goaway_ || opened_ >= max_streams_ || w_.draining()) {
    close("idle");
    return;
  }
  timed_.idle = timed_.reusable = true;
  timed_.fired = false;
  timed_.deadline = now_ms() + idle_ms_;
}

awaitable<void> H2Session::reader(std::shared_ptr<H2Session> self) {
  const char* why = "closed by the upstream";
  while (state_ != State::closed) {
    auto [e, n] = co_await transport::read_some(*io_, asio::buffer(rbuf_));
    if (state_ == State::closed) break;
    if (e || n == 0) {
      if (e && e != asio::error::eof) why = timed_.fired ? "idle" : "read failed";
      break;
    }
    ssize_t rv = nghttp2_session_mem_recv(ng_, reinterpret_cast<const uint8_t*>(rbuf_.data()), n);
    if (rv < 0) {
      log::warn("upstream {}: HTTP/2 error from {}: {}", upstream_, node_, nghttp2_strerror(static_cast<int>(rv)));
      why = "protocol error";
      break;
    }
    kick();
  }
  close(why);
}

awaitable<void> H2Session::writer(std::shared_ptr<H2Session> self) {
  while (state_ != State::closed) {
    wbuf_.clear();
    for (;;) {
      const uint8_t* d = nullptr;
      ssize_t n = nghttp2_session_mem_send(ng_, &d);
      if (n < 0) {
        log::warn("upstream {}: HTTP/2 session to {} failed: {}", upstream_, node_, nghttp2_strerror(static_cast<int>(n)));
        close("send failed");
        co_return;
      }
      if (n == 0) break;
      wbuf_.append(reinterpret_cast<const char*>(d), static_cast<size_t>(n));
      if (wbuf_.size() >= kWriteBatch) break;
    }
    if (!wbuf_.empty()) {
      const bool was_idle = timed_.idle;
      const int64_t idle_deadline = timed_.deadline;
      timed_.idle = false;
      timed_.fired = false;
      timed_.deadline = now_ms() + transport::ms(send_timeout_);
      auto [e, n] = co_await transport::write(*io_, asio::buffer(wbuf_));
      if (state_ == State::closed) co_return;
      if (e) {
        close("write failed");
        co_return;
      }
      timed_.deadline = was_idle && calls_.empty() ? idle_deadline : 0;
      timed_.idle = was_idle && calls_.empty();
      continue;
    }
    if (!nghttp2_session_want_read(ng_) && !nghttp2_session_want_write(ng_)) {
      close("session done");
      co_return;
    }
    co_await wake_.wait(0);
  }
}

int H2Session::on_header(nghttp2_session* s, const nghttp2_frame* f, const uint8_t* name, size_t namelen,
                         const uint8_t* value, size_t valuelen, uint8_t, void*) {
  if (f->hd.type != NGHTTP2_HEADERS) return 0;
  if (auto* c = call_of(s, f->hd.stream_id)) {
    // SETTINGS_MAX_HEADER_LIST_SIZE is only advertised: nghttp2 does not
    // enforce it on what it decodes, and HPACK lets a few bytes on the wire
    // repeat a 4 KiB table entry. So the decoded size is counted here (as RFC
    // 9113 counts it: name + value + 32), head and trailers together, and a
    // response past twice the advertised bound resets the stream (502).
    c->header_bytes_ += namelen + valuelen + 32;
    if (c->header_bytes_ > 2 * kMaxResponseHeaderList) {
      c->failed_ = true;
      c->rwait_.wake();
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    c->resp_.field(std::string_view(reinterpret_cast<const char*>(name), namelen),
                   std::string_view(reinterpret_cast<const char*>(value), valuelen));
  }
  return 0;
}

int H2Session::on_frame_recv(nghttp2_session* s, const nghttp2_frame* f, void* user) {
  auto* self = static_cast<H2Session*>(user);
  switch (f->hd.type) {
    case NGHTTP2_SETTINGS:
      if (!(f->hd.flags & NGHTTP2_FLAG_ACK) && self->pool_)
        self->pool_->peer_caps_[self->key_] =
            nghttp2_session_get_remote_settings(s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
      return 0;
    case NGHTTP2_GOAWAY:
      // No new streams here; open ones finish (those above last_stream_id
      // nghttp2 closes as refused).
      self->goaway_ = true;
      if (self->pool_) self->pool_->remove(self->key_, self);
      self->pool_ = nullptr;
      return 0;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA: break;
    default: return 0;
  }
  auto* c = call_of(s, f->hd.stream_id);
  if (!c) return 0;
  const bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
  if (f->hd.type == NGHTTP2_HEADERS) {
    if (!c->resp_.end_headers(end)) {
      nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_PROTOCOL_ERROR);
      c->failed_ = true;
    }
  } else if (end) {
    c->resp_.end();
  }
  c->rwait_.wake();
  return 0;
}

int H2Session::on_data_chunk(nghttp2_session* s, uint8_t, int32_t id, const uint8_t* data, size_t len, void*) {
  auto* c = call_of(s, id);
  if (!c) {
    // Nobody reads it: give the window back at once.
    nghttp2_session_consume(s, id, len);
    return 0;
  }
  c->resp_.data(std::string_view(reinterpret_cast<const char*>(data), len));
  c->unconsumed_ += len;
  c->rwait_.wake();
  return 0;
}

int H2Session::on_stream_close(nghttp2_session* s, int32_t id, uint32_t code, void*) {
  if (auto* c = call_of(s, id)) c->on_stream_close(code);
  return 0;
}

ssize_t H2Session::read_data(nghttp2_session* s, int32_t id, uint8_t* buf, size_t len, uint32_t* flags,
                             nghttp2_data_source*, void*) {
  auto* c = call_of(s, id);
  if (!c) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  return c->read_data(buf, len, flags);
}

// --- H2ClientStream ---------------------------------------------------------

H2ClientStream::H2ClientStream(std::shared_ptr<H2Session> s, int64_t call_ms)
    : session_(std::move(s)),
      req_(session_->key_.starts_with("https|") ? "https" : "http"),
      call_ms_(call_ms),
      rwait_(session_->w_.io().get_executor()),
      wwait_(session_->w_.io().get_executor()) {
  session_->attach(this);
}

H2ClientStream::~H2ClientStream() {
  detach_stream(NGHTTP2_CANCEL);
  session_->detach(this);
}

// Forgets the HTTP/2 stream: a reset when it is still open, and the window
// of what was received but never read goes back to the connection.
void H2ClientStream::detach_stream(uint32_t code) {
  if (stream_gone_ || id_ < 0) return;
  stream_gone_ = true;
  if (nghttp2_session* ng = session_->ng()) {
    nghttp2_session_set_stream_user_data(ng, id_, nullptr);
    nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, id_, code);
    if (unconsumed_) nghttp2_session_consume_connection(ng, unconsumed_);
    unconsumed_ = 0;
    session_->kick();
  }
}

bool H2ClientStream::submit() {
  nghttp2_session* ng = session_->ng();
  if (!ng) return false;
  const auto& fields = req_.fields();
  // nghttp2 copies the list: it is built in a reused vector (thread-local,
  // a worker runs one call's submit at a time).
  thread_local std::vector<nghttp2_nv> nva;
  nva.clear();
  for (const auto& f : fields)
    nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(f.name.data())),
                   reinterpret_cast<uint8_t*>(const_cast<char*>(f.value.data())), f.name.size(), f.value.size(),
                   NGHTTP2_NV_FLAG_NONE});
  nghttp2_data_provider prd;
  prd.source.ptr = nullptr;
  prd.read_callback = H2Session::read_data;
  id_ = nghttp2_submit_request(ng, nullptr, nva.data(), nva.size(), req_.has_body() ? &prd : nullptr, this);
  if (id_ < 0) return false;
  if (call_ms_ >= 0) deadline_ = now_ms() + call_ms_;
  session_->kick();
  return true;
}

ssize_t H2ClientStream::read_data(uint8_t* buf, size_t len, uint32_t* flags) {
  const size_t have = send_.size() - send_off_;
  const size_t n = std::min(len, have);
  std::memcpy(buf, send_.data() + send_off_, n);
  send_off_ += n;
  if (send_off_ == send_.size()) {
    send_.clear();
    send_off_ = 0;
  }
  if (send_.size() - send_off_ < kMaxPending) wwait_.wake();
  if (!req_.ended() || send_off_ < send_.size()) {
    if (n == 0) {
      deferred_ = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    return static_cast<ssize_t>(n);
  }
  *flags |= NGHTTP2_DATA_FLAG_EOF;
  const auto& tr = req_.trailers();
  if (!tr.empty()) {
    thread_local std::vector<nghttp2_nv> nva;
    nva.clear();
    for (const auto& f : tr)
      nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(f.name.data())),
                     reinterpret_cast<uint8_t*>(const_cast<char*>(f.value.data())), f.name.size(), f.value.size(),
                     NGHTTP2_NV_FLAG_NONE});
    if (nghttp2_submit_trailer(session_->ng(), id_, nva.data(), nva.size()) == 0)
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
  }
  return static_cast<ssize_t>(n);
}

awaitable<transport::Stream::Result> H2ClientStream::write(std::array<asio::const_buffer, 2> bufs) {
  size_t total = 0;
  for (const auto& b : bufs) {
    if (b.size() == 0) continue;
    if (closed_by_us_ || failed_ || stream_gone_ || session_->state_ == H2Session::State::closed)
      co_return Result{refused_ ? asio::error::connection_refused : asio::error::connection_reset, total};
    if (!req_.feed(std::string_view(static_cast<const char*>(b.data()), b.size()), send_)) {
      log::warn("upstream {}: request not sent over HTTP/2: {}", session_->upstream_, req_.error());
      close();
      co_return Result{asio::error::invalid_argument, total};
    }
    total += b.size();
  }
  if (id_ < 0 && req_.head_done()) {
    if (!submit()) {
      failed_ = true;
      co_return Result{asio::error::connection_reset, 0};
    }
  } else if (id_ >= 0 && deferred_ && (send_off_ < send_.size() || req_.ended())) {
    deferred_ = false;
    if (nghttp2_session* ng = session_->ng()) nghttp2_session_resume_data(ng, id_);
    session_->kick();
  }
  // Bounded memory: wait while nghttp2 (the peer's window) has not taken
  // the payload.
  while (send_.size() - send_off_ >= kMaxPending) {
    if (failed_ || stream_gone_ || closed_by_us_)
      co_return Result{refused_ ? asio::error::connection_refused : asio::error::connection_reset, total};
    if (deadline_ && now_ms() >= deadline_) {
      expire();
      co_return Result{asio::error::timed_out, total};
    }
    if (co_await wwait_.wait(deadline_) == H2Waiter::Woke::cancel)
      co_return Result{asio::error::operation_aborted, total};
  }
  co_return Result{error_code{}, total};
}

awaitable<transport::Stream::Result> H2ClientStream::read_some(asio::mutable_buffer b) {
  for (;;) {
    if (out_off_ < out_.size()) {
      const size_t n = std::min(b.size(), out_.size() - out_off_);
      std::memcpy(b.data(), out_.data() + out_off_, n);
      out_off_ += n;
      if (out_off_ == out_.size()) {
        out_.clear();
        out_off_ = 0;
      }
      // Give the window back for what the pipeline took (the framing makes
      // this a slight undercount until the buffer empties).
      const size_t give = out_.empty() ? unconsumed_ : std::min(unconsumed_, n);
      if (give && !stream_gone_) {
        if (nghttp2_session* ng = session_->ng()) {
          nghttp2_session_consume(ng, id_, give);
          session_->kick();
        }
      }
      unconsumed_ -= give;
      co_return Result{error_code{}, n};
    }
    if (resp_.done()) co_return Result{asio::error::eof, 0};
    if (failed_ || closed_by_us_ || (stream_gone_ && !resp_.done()))
      co_return Result{refused_ && !closed_by_us_ ? asio::error::connection_refused : asio::error::connection_reset, 0};
    if (deadline_ && now_ms() >= deadline_) {
      expire();
      continue;
    }
    if (co_await rwait_.wait(deadline_) == H2Waiter::Woke::cancel)
      co_return Result{asio::error::operation_aborted, 0};
  }
}

// grpc-timeout passed: the upstream stream is cancelled and the client
// gets DEADLINE_EXCEEDED in place of the rest of the response.
void H2ClientStream::expire() {
  log::info("upstream {}: a call to {} outlived its deadline (grpc-timeout)", session_->upstream_, session_->node_);
  detach_stream(NGHTTP2_CANCEL);
  resp_.fail(http::kGrpcDeadlineExceeded, "Deadline Exceeded");
  deadline_ = 0;
  wwait_.wake();
}

void H2ClientStream::cancel() {
  rwait_.cancel();
  wwait_.cancel();
}

void H2ClientStream::close() {
  closed_by_us_ = true;
  detach_stream(NGHTTP2_CANCEL);
  rwait_.wake();
  wwait_.wake();
}

void H2ClientStream::on_stream_close(uint32_t code) {
  stream_gone_ = true;
  if (!resp_.done()) failed_ = true;
  // nghttp2 closes the streams above a GOAWAY's last-stream-id with
  // REFUSED_STREAM too. Nothing of a response may have arrived.
  refused_ = code == NGHTTP2_REFUSED_STREAM && header_bytes_ == 0 && out_.empty() && unconsumed_ == 0;
  if (refused_)
    log::info("upstream {}: {} refused a stream before processing it", session_->upstream_, session_->node_);
  else if (code != NGHTTP2_NO_ERROR && !resp_.done())
    log::warn("upstream {}: stream reset by {} ({})", session_->upstream_, session_->node_, nghttp2_http2_strerror(code));
  // What arrived and was not read is returned on the connection window.
  if (unconsumed_) {
    if (nghttp2_session* ng = session_->ng()) nghttp2_session_consume_connection(ng, unconsumed_);
    unconsumed_ = 0;
  }
  rwait_.wake();
  wwait_.wake();
}

void H2ClientStream::on_session_end() {
  stream_gone_ = true;
  if (!resp_.done()) failed_ = true;
  rwait_.wake();
  wwait_.wake();
}

// --- H2Pool -----------------------------------------------------------------

H2Pool::~H2Pool() {
  for (auto& [k, v] : sessions_)
    for (auto& s : v) s->pool_ = nullptr;
}

void H2Pool::remove(const std::string& key, const H2Session* s) {
  auto it = sessions_.find(key);
  if (it == sessions_.end()) return;
  auto& v = it->second;
  v.erase(std::remove_if(v.begin(), v.end(), [&](const auto& p) { return p.get() == s; }), v.end());
  if (v.empty()) sessions_.erase(it);
}

awaitable<H2Pool::Opened> H2Pool::open(const H2Target& t, int64_t call_ms) {
  Opened r;
  std::shared_ptr<H2Session> s;
  if (auto it = sessions_.find(t.key); it != sessions_.end())
    for (auto& c : it->second)
      if (c->usable()) {
        s = c;
        break;
      }
  if (!s) {
    s = std::make_shared<H2Session>(w_, *this, t.key, std::max(1, t.max_streams), std::max<int64_t>(1, t.idle_ms));
    if (auto it = peer_caps_.find(t.key); it != peer_caps_.end())
      s->assumed_cap_ = std::clamp<uint32_t>(it->second, 1, kInitialPeerStreams);
    sessions_[t.key].push_back(s);
    ++s->reserved_;
    co_await s->connect(t);
    --s->reserved_;
  } else {
    r.reused = s->opened_ > 0;
    ++s->reserved_;
    while (s->state_ == H2Session::State::connecting) co_await s->ready_.async_wait(tok);
    --s->reserved_;
  }
  if (s->state_ != H2Session::State::ready) {
    r.fail_status = s->fail_status_;
    r.timed_out = s->timed_out_;
    co_return r;
  }
  r.stream = std::make_shared<H2ClientStream>(s, call_ms);
  co_return r;
}

}  // namespace holdfast::proxy
