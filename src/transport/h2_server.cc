// Downstream HTTP/2: the nghttp2 server session of one connection (a reader
// feeding nghttp2_session_mem_recv, a writer draining mem_send, one
// pipeline coroutine per stream, all on the worker's executor, no locks)
// and the HTTP/1.1 <-> HTTP/2 translation of each stream.
#include "transport/h2_server.h"

#include <nghttp2/nghttp2.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cstring>

#include "core/log.h"
#include "http/head_writer.h"
#include "transport/io.h"

namespace holdfast::transport {
namespace asio = boost::asio;
using asio::awaitable;
using boost::system::error_code;
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

namespace {
// Fields a sender must not put in trailers (RFC 9110 §6.5.1: framing,
// routing, authentication, request modifiers, content metadata) and those
// the gateway sets itself: an HTTP/1.1 origin that merges trailers into the
// header section must not get them from a client this way.
bool not_a_trailer(std::string_view n) {
  static constexpr std::string_view kNot[] = {
      "content-length", "transfer-encoding", "trailer", "te", "host", "authorization", "proxy-authorization",
      "cookie", "set-cookie", "content-type", "content-encoding", "content-range", "expect", "max-forwards",
      "cache-control", "range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since",
      "if-range", "forwarded", "x-real-ip", "connection", "keep-alive", "upgrade", "proxy-connection"};
  for (auto d : kNot)
    if (n == d) return true;
  // The identity the auth plugins pass on (X-Consumer-Username,
  // X-Consumer-Custom-Id, X-Credential-Identifier) and request-id's header.
  return n.starts_with("x-forwarded-") || n.starts_with("x-consumer-") || n == "x-credential-identifier" ||
         n == "x-request-id";
}
}  // namespace

// ---------------------------------------------------------------------------
// H2Session

class H2Session {
 public:
  H2Session(asio::io_context& io, Stream& conn, const H2Options& opts, H2Hooks& hooks);
  ~H2Session();
  awaitable<void> run(std::string_view already);

  void signal_write() {
    if (writer_waiting_) writer_wake_.cancel();
  }
  void after_output(H2Stream& st);
  nghttp2_session* ng() const { return ng_; }
  bool dead() const { return dead_; }
  asio::io_context& io() { return io_; }
  std::vector<nghttp2_nv>& nva() { return nva_; }

 private:
  // What the worker's deadline list holds for the connection: its cancel()
  // is the idle/header deadline or a drain (GOAWAY), close() ends it at once.
  class Control final : public Stream {
   public:
    explicit Control(H2Session& s) : s_(s) {}
    awaitable<Result> read_some(asio::mutable_buffer) override { co_return Result{asio::error::operation_not_supported, 0}; }
    awaitable<Result> write(std::array<asio::const_buffer, 2>) override { co_return Result{asio::error::operation_not_supported, 0}; }
    void cancel() override { s_.on_deadline(); }
    awaitable<void> shutdown_send() override { co_return; }
    void close() override { s_.hard_close(); }
    bool is_open() const override { return !s_.dead_; }

   private:
    H2Session& s_;
  };

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* f, void* ud);
  static int on_header(nghttp2_session*, const nghttp2_frame* f, const uint8_t* name, size_t namelen,
                       const uint8_t* value, size_t valuelen, uint8_t flags, void* ud);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* f, void* ud);
  static int on_data_chunk(nghttp2_session*, uint8_t flags, int32_t id, const uint8_t* data, size_t len, void* ud);
  static int on_stream_close(nghttp2_session*, int32_t id, uint32_t code, void* ud);
  static int on_frame_send(nghttp2_session*, const nghttp2_frame* f, void* ud);

 public:
  // The data provider of every response body: DATA from the stream's queue.
  static ssize_t read_data(nghttp2_session*, int32_t, uint8_t*, size_t, uint32_t*, nghttp2_data_source*, void*);

 private:

  void add_field(H2Stream& st, std::string_view name, std::string_view value);
  bool begin_line(H2Stream& st);
  void headers_done(H2Stream& st, bool end_stream);
  void respond_error(H2Stream& st, int status);
  void start(H2Stream& st);
  awaitable<void> run_stream(H2Stream* st);
  awaitable<void> writer();
  void free_stream(H2Stream* st);
  void on_deadline();
  void hard_close();
  void goaway();
  void update_deadline();
  bool charge(double cost);  // the flood budget; false: the connection is being closed
  void wake_main() {
    if (main_waiting_) main_wake_.cancel();
  }

  friend class H2Stream;
  asio::io_context& io_;
  Stream& conn_;
  const H2Options& opts_;
  H2Hooks& hooks_;
  nghttp2_session* ng_ = nullptr;
  Control control_{*this};
  Timed ctl_;     // idle / header deadline, drain
  Timed wt_;      // the writer's send_timeout
  asio::steady_timer writer_wake_, main_wake_;
  bool writer_waiting_ = false, main_waiting_ = false, writer_running_ = false;
  bool dead_ = false;          // no more I/O on the connection
  bool deadline_goaway_ = false;  // a deadline sent GOAWAY: the next one ends the connection
  bool stop_reading_ = false;  // a fatal error or a flood: flush what is queued, then end
  bool finished_ = false;      // the writer said everything; lingering close
  static constexpr int64_t kLingerMs = 2000;
  int running_ = 0;            // pipeline coroutines
  uint32_t requests_ = 0;
  double tokens_;
  int64_t refill_ms_;
  H2Stream* streams_ = nullptr;  // every live H2Stream
  std::string wbuf_;
  std::vector<nghttp2_nv> nva_;
};

ssize_t H2Session::read_data(nghttp2_session* ng, int32_t id, uint8_t* buf, size_t length, uint32_t* flags,
                     nghttp2_data_source* src, void* ud) {
  auto* st = static_cast<H2Stream*>(src->ptr);
  const size_t avail = st->queued();
  size_t n = std::min(length, avail);
  if (n > 0) {
    std::memcpy(buf, st->out_.data() + st->out_off_, n);
    st->out_off_ += n;
    if (st->out_off_ == st->out_.size()) {
      st->out_.clear();
      st->out_off_ = 0;
    } else if (st->out_off_ >= H2Stream::kOutBound) {
      st->out_.erase(0, st->out_off_);
      st->out_off_ = 0;
    }
    if (st->queued() <= H2Stream::kOutBound) st->wake_writer();
  }
  if (st->queued() == 0) {
    if (!st->out_end_) {
      if (n > 0) return static_cast<ssize_t>(n);
      st->deferred_ = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (!st->trailer_store_.empty()) {
      auto& nva = st->s_.nva();
      nva.clear();
      for (size_t i = 0; i + 1 < st->trailer_store_.size(); i += 2) {
        const auto& k = st->trailer_store_[i];
        const auto& v = st->trailer_store_[i + 1];
        nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(k.data())),
                       reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), k.size(), v.size(),
                       NGHTTP2_NV_FLAG_NONE});
      }
      if (nghttp2_submit_trailer(ng, id, nva.data(), nva.size()) == 0) *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
  }
  return static_cast<ssize_t>(n);
}

H2Session::H2Session(asio::io_context& io, Stream& conn, const H2Options& opts, H2Hooks& hooks)
    : io_(io), conn_(conn), opts_(opts), hooks_(hooks), writer_wake_(io), main_wake_(io),
      tokens_(10.0 * opts.http2.control_frame_rate), refill_ms_(now_ms()) {
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  // Request DATA is acknowledged only as the pipeline reads it, so that a
  // client cannot make us buffer more than its windows.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_no_closed_streams(opt, 1);
  nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
  // The library's defences, with its defaults written out: rapid reset
  // (CVE-2023-44487), CONTINUATION floods, SETTINGS entries, queued ACKs.
  nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 33);
  nghttp2_option_set_max_continuations(opt, 8);
  nghttp2_option_set_max_settings(opt, 32);
  nghttp2_option_set_max_outbound_ack(opt, 1000);
  nghttp2_session_server_new2(&ng_, cb, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);
  if (!ng_) throw std::bad_alloc();
  const nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, opts.http2.max_concurrent_streams},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, opts.http2.max_header_list_size},
      {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, opts.http2.hpack_table_size},
  };
  nghttp2_submit_settings(ng_, NGHTTP2_FLAG_NONE, iv, std::size(iv));
  // A connection window larger than one stream's, so that several uploads
  // proceed at once; still a bound on what the connection can make us hold.
  nghttp2_session_set_local_window_size(ng_, NGHTTP2_FLAG_NONE, 0, 1 << 20);
  ctl_.stream = &control_;
  ctl_.idle = true;  // a drain sends GOAWAY at once
  wt_.stream = &conn_;
}

H2Session::~H2Session() {
  nghttp2_session_del(ng_);  // first: it may still refer to the streams
  while (streams_) {
    H2Stream* s = streams_;
    streams_ = s->next_;
    delete s;
  }
}

void H2Session::update_deadline() {
  if (running_ == 0) {
    if (ctl_.deadline == 0) {
      ctl_.deadline = now_ms() + ms(deadline_goaway_ ? opts_.send_timeout
                                    : requests_ == 0 ? opts_.header_timeout
                                                     : opts_.keepalive_timeout);
      ctl_.fired = false;
    }
    ctl_.reusable = requests_ > 0 && !deadline_goaway_;
  } else {
    ctl_.deadline = 0;
    ctl_.reusable = false;
  }
}

void H2Session::goaway() {
  if (dead_) return;
  nghttp2_submit_goaway(ng_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(ng_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
  signal_write();
}

// Idle or header deadline, a drain, or a full worker shedding idle
// connections: GOAWAY; the streams already open finish, then the
// connection ends. GOAWAY alone is not enough: a client that left a header
// block unfinished, or never opens its flow-control window, keeps a stream
// open without any pipeline running, and nghttp2 then waits for it for
// ever. So the deadline is armed again, send_timeout later, and the second
// expiry closes the connection whatever its streams are doing.
void H2Session::on_deadline() {
  if (deadline_goaway_) {
    hard_close();
    return;
  }
  deadline_goaway_ = true;
  goaway();
  ctl_.idle = false;  // a drain or a shed already had its GOAWAY; only the deadline is left
  ctl_.reusable = false;
  ctl_.fired = false;
  ctl_.deadline = running_ == 0 ? now_ms() + ms(opts_.send_timeout) : 0;
}

void H2Session::hard_close() {
  if (dead_) return;
  dead_ = true;
  for (H2Stream* s = streams_; s; s = s->next_) {
    s->wake_reader();
    s->wake_writer();
    s->abandoned();
  }
  conn_.close();
  signal_write();
  wake_main();
}

bool H2Session::charge(double cost) {
  const int64_t now = now_ms();
  const double rate = opts_.http2.control_frame_rate, burst = 10.0 * rate;
  tokens_ = std::min(burst, tokens_ + static_cast<double>(now - refill_ms_) * rate / 1000.0);
  refill_ms_ = now;
  tokens_ -= cost;
  if (tokens_ >= 0) return true;
  if (!stop_reading_) {
    log::info("HTTP/2 connection sent more control frames than it earned: GOAWAY ENHANCE_YOUR_CALM");
    nghttp2_session_terminate_session(ng_, NGHTTP2_ENHANCE_YOUR_CALM);
    stop_reading_ = true;
    signal_write();
  }
  return false;
}

int H2Session::on_begin_headers(nghttp2_session* ng, const nghttp2_frame* f, void* ud) {
  auto* self = static_cast<H2Session*>(ud);
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  if (self->running_ >= static_cast<int>(self->opts_.http2.max_concurrent_streams)) {
    // Streams the client reset still run their pipeline until it notices
    // (at once when it waits on the upstream, see on_abandon; else its next
    // read or write): they count against the limit too, so that opening and
    // resetting streams cannot pile up requests upstream (CVE-2023-44487).
    nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  auto* st = new H2Stream(*self, f->hd.stream_id);
  st->next_ = self->streams_;
  if (self->streams_) self->streams_->prev_ = st;
  self->streams_ = st;
  nghttp2_session_set_stream_user_data(ng, f->hd.stream_id, st);
  self->charge(-1);  // a request earns its client a little budget
  if (++self->requests_ == self->opts_.http2.max_requests) {
    // As nginx's keepalive_requests: the last stream is served, then the
    // connection ends gracefully.
    nghttp2_submit_goaway(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR, nullptr, 0);
  }
  return 0;
}

void H2Session::add_field(H2Stream& st, std::string_view name, std::string_view value) {
  st.header_bytes_ += name.size() + value.size() + 32;
  if (st.header_bytes_ > opts_.http2.max_header_list_size) {
    st.bad_ = 431;
    return;
  }
  // For the access log line of a refused request (bounded there).
  if (name == "user-agent" && st.user_agent_.empty()) st.user_agent_.assign(value.substr(0, 512));
  if (st.bad_) return;
  if (name[0] == ':') {
    if (name == ":method") st.method_.assign(value);
    else if (name == ":path") st.path_.assign(value);
    else if (name == ":authority") st.authority_.assign(value);
    return;  // :scheme is ours (the listener's); nghttp2 refuses :protocol (no extended CONNECT)
  }
  std::string& h = st.head_;
  if (!begin_line(st)) return;
  if (http::unsafe_value_byte(value) != std::string_view::npos) {
    st.bad_ = 400;
    return;
  }
  if (name == "host") {
    // :authority is the routing host; a Host that says otherwise is refused.
    if (!st.host_.empty() || (!st.authority_.empty() && !http::iequals(value, st.authority_))) {
      st.bad_ = 400;
      return;
    }
    st.host_.assign(value.empty() ? std::string_view(" ") : value);
    if (!st.authority_.empty()) return;  // already written
  } else if (name == "cookie") {
    // RFC 9113 §8.2.3: split cookie fields are joined with "; " for HTTP/1.1.
    if (!st.cookie_.empty()) st.cookie_.append("; ");
    st.cookie_.append(value);
    return;
  } else if (name == "content-length") {
    st.has_length_ = true;
  }
  h.append(name).append(": ").append(value).append("\r\n");
}

// The request line, and Host from :authority, once the pseudo-header fields
// (which come first) are all in. False: they are refused.
bool H2Session::begin_line(H2Stream& st) {
  if (st.line_done_) return true;
  st.line_done_ = true;
  if (http::unsafe_target_byte(st.path_) != std::string_view::npos ||
      http::unsafe_value_byte(st.authority_) != std::string_view::npos) {
    st.bad_ = 400;
    return false;
  }
  std::string& h = st.head_;
  h.reserve(256);
  h.append(st.method_).append(" ").append(st.path_).append(" HTTP/1.1\r\n");
  if (!st.authority_.empty()) h.append("Host: ").append(st.authority_).append("\r\n");
  return true;
}

void H2Session::respond_error(H2Stream& st, int status) {
  char code[4];
  std::snprintf(code, sizeof code, "%03d", status);
  static constexpr std::string_view kServer = "holdfast";
  nghttp2_nv nv[] = {
      {(uint8_t*)":status", (uint8_t*)code, 7, 3, NGHTTP2_NV_FLAG_NONE},
      {(uint8_t*)"server", (uint8_t*)kServer.data(), 6, kServer.size(), NGHTTP2_NV_FLAG_NONE},
      {(uint8_t*)"content-length", (uint8_t*)"0", 14, 1, NGHTTP2_NV_FLAG_NONE},
  };
  nghttp2_submit_response(ng_, st.id_, nv, std::size(nv), nullptr);
  st.submitted_ = true;
  st.out_end_ = true;
  st.app_closed_ = true;  // no pipeline: DATA that follows is dropped
  if (!st.in_end_) st.rst_after_end_ = true;
  if (hooks_.rejected) hooks_.rejected(st.method_, st.path_, st.user_agent_, status);
}

void H2Session::headers_done(H2Stream& st, bool end_stream) {
  if (end_stream) st.in_end_ = true;
  if (!st.bad_) begin_line(st);
  if (st.bad_) {
    respond_error(st, st.bad_);
    return;
  }
  if (st.method_ == "CONNECT") {
    // Tunnels (and so WebSocket over HTTP/2, RFC 8441) are not proxied over HTTP/2.
    respond_error(st, 405);
    return;
  }
  std::string& h = st.head_;
  if (!st.cookie_.empty()) h.append("Cookie: ").append(st.cookie_).append("\r\n");
  if (!st.in_end_ && !st.has_length_) {
    h.append("Transfer-Encoding: chunked\r\n");
    st.chunked_ = true;
  }
  h.append("\r\n");
  st.conv_.reset(st.method_);
  start(st);
}

void H2Session::start(H2Stream& st) {
  st.running_ = true;
  ++running_;
  update_deadline();
  asio::co_spawn(io_, run_stream(&st), [](std::exception_ptr e) {
    if (e) try { std::rethrow_exception(e); } catch (const std::exception& ex) { log::error("HTTP/2 stream: {}", ex.what()); }
  });
}

awaitable<void> H2Session::run_stream(H2Stream* st) {
  try {
    co_await hooks_.serve(*st);
  } catch (const std::exception& e) {
    log::error("HTTP/2 stream {}: {}", st->id_, e.what());
  }
  st->close();
  st->running_ = false;
  --running_;
  if (st->closed_) free_stream(st);
  if (!dead_) update_deadline();
  signal_write();
  wake_main();
}

void H2Session::free_stream(H2Stream* st) {
  if (st->prev_) st->prev_->next_ = st->next_;
  else streams_ = st->next_;
  if (st->next_) st->next_->prev_ = st->prev_;
  delete st;
}

int H2Session::on_header(nghttp2_session*, const nghttp2_frame* f, const uint8_t* name, size_t namelen,
                         const uint8_t* value, size_t valuelen, uint8_t, void* ud) {
  auto* self = static_cast<H2Session*>(ud);
  auto* st = static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(self->ng_, f->hd.stream_id));
  if (!st) return 0;
  std::string_view n(reinterpret_cast<const char*>(namelen ? name : nullptr), namelen);
  std::string_view v(reinterpret_cast<const char*>(valuelen ? value : nullptr), valuelen);
  if (f->headers.cat == NGHTTP2_HCAT_REQUEST) {
    if (n.empty()) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    self->add_field(*st, n, v);
  } else {
    // Request trailers: the header block's bound and value check (the
    // response may be under way, so a bad one resets the stream instead of
    // a 400), then the last chunk carries them when the body goes chunked.
    // With a Content-Length the body is not chunked and they are dropped.
    st->trailer_bytes_ += namelen + valuelen + 32;
    if (st->trailer_bytes_ > self->opts_.http2.max_header_list_size ||
        http::unsafe_value_byte(v) != std::string_view::npos || n.empty())
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (st->chunked_ && !not_a_trailer(n)) st->trailers_.append(n).append(": ").append(v).append("\r\n");
  }
  return 0;
}

int H2Session::on_frame_recv(nghttp2_session*, const nghttp2_frame* f, void* ud) {
  auto* self = static_cast<H2Session*>(ud);
  switch (f->hd.type) {
    case NGHTTP2_HEADERS: {
      auto* st = static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(self->ng_, f->hd.stream_id));
      if (!st) return 0;
      const bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
      if (f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        self->headers_done(*st, end);
      } else if (end) {
        st->in_end_ = true;
        st->wake_reader();
      }
      break;
    }
    case NGHTTP2_DATA: {
      const bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
      if (f->hd.length == 0 && !end) self->charge(1);
      if (!end) break;
      auto* st = static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(self->ng_, f->hd.stream_id));
      if (st) {
        st->in_end_ = true;
        st->wake_reader();
      }
      break;
    }
    case NGHTTP2_PING:
    case NGHTTP2_SETTINGS:
      if (!(f->hd.flags & NGHTTP2_FLAG_ACK)) self->charge(1);
      break;
    case NGHTTP2_WINDOW_UPDATE:
    case NGHTTP2_PRIORITY:
      self->charge(1);
      break;
    default:
      break;
  }
  return 0;
}

int H2Session::on_data_chunk(nghttp2_session* ng, uint8_t, int32_t id, const uint8_t* data, size_t len, void* ud) {
  auto* st = static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(ng, id));
  if (!st || st->app_closed_ || !st->running_) {
    // Nobody reads it: give the connection window back at once.
    nghttp2_session_consume_connection(ng, len);
    return 0;
  }
  st->body_.append(reinterpret_cast<const char*>(data), len);
  st->wake_reader();
  return 0;
}

int H2Session::on_stream_close(nghttp2_session* ng, int32_t id, uint32_t, void* ud) {
  auto* self = static_cast<H2Session*>(ud);
  auto* st = static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(ng, id));
  if (!st) return 0;
  st->closed_ = true;
  if (size_t left = st->body_.size() - st->body_off_) nghttp2_session_consume_connection(ng, left);
  st->body_.clear();
  st->body_off_ = 0;
  st->wake_reader();
  st->wake_writer();
  st->abandoned();
  if (!st->running_) self->free_stream(st);
  return 0;
}

int H2Session::on_frame_send(nghttp2_session* ng, const nghttp2_frame* f, void* ud) {
  auto* self = static_cast<H2Session*>(ud);
  if (f->hd.type == NGHTTP2_DATA) self->charge(-static_cast<double>(f->hd.length) / 1024.0);
  if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    auto* st = static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(ng, f->hd.stream_id));
    // The response is whole but the request body was not read: tell the
    // client to stop sending it (as nginx does).
    if (st && st->rst_after_end_ && !st->reset_sent_) {
      st->reset_sent_ = true;
      nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
    }
  }
  return 0;
}

void H2Session::after_output(H2Stream& st) {
  if (st.submitted_ && st.deferred_ && !st.closed_) {
    st.deferred_ = false;
    nghttp2_session_resume_data(ng_, st.id_);
  }
  signal_write();
}

awaitable<void> H2Session::writer() {
  writer_running_ = true;
  while (!dead_) {
    wbuf_.clear();
    for (;;) {
      const uint8_t* p = nullptr;
      ssize_t n = nghttp2_session_mem_send(ng_, &p);
      if (n < 0) {
        log::debug("HTTP/2 send: {}", nghttp2_strerror(static_cast<int>(n)));
        stop_reading_ = true;
        break;
      }
      if (n == 0) break;
      wbuf_.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
      if (wbuf_.size() >= 64 * 1024) break;
    }
    if (!wbuf_.empty()) {
      wt_.fired = false;
      wt_.deadline = now_ms() + ms(opts_.send_timeout);
      auto [ec, n] = co_await conn_.write({asio::buffer(wbuf_), asio::const_buffer()});
      wt_.deadline = 0;
      if (ec) {
        hard_close();
        break;
      }
      continue;
    }
    const bool want_read = nghttp2_session_want_read(ng_) && !stop_reading_;
    if (!want_read && !nghttp2_session_want_write(ng_)) {
      // Everything is said (GOAWAY and the last responses). Close as
      // nginx's lingering close: stop writing, and let the reader discard
      // what the client still sends for a while, so that a client in the
      // middle of sending reads our GOAWAY instead of a reset.
      finished_ = true;
      wt_.fired = false;
      wt_.deadline = now_ms() + kLingerMs;
      co_await conn_.shutdown_send();
      break;
    }
    writer_waiting_ = true;
    writer_wake_.expires_at(asio::steady_timer::time_point::max());
    co_await writer_wake_.async_wait(tok);
    writer_waiting_ = false;
  }
  writer_running_ = false;
  wake_main();
}

awaitable<void> H2Session::run(std::string_view already) {
  hooks_.watch(&ctl_);
  hooks_.watch(&wt_);
  update_deadline();
  if (hooks_.draining()) goaway();
  asio::co_spawn(io_, writer(), [](std::exception_ptr e) {
    if (e) try { std::rethrow_exception(e); } catch (const std::exception& ex) { log::error("HTTP/2 writer: {}", ex.what()); }
  });
  std::vector<char> rbuf(16 * 1024);
  std::string_view pending = already;
  // Reads until the client closes, the connection fails, or the writer's
  // lingering close ends; after a fatal error or a flood, and once the
  // writer has said everything, what arrives is discarded.
  while (!dead_) {
    if (pending.empty()) {
      auto [ec, n] = co_await read_some(conn_, asio::buffer(rbuf));
      if (ec || n == 0) break;
      pending = std::string_view(rbuf.data(), n);
    }
    if (stop_reading_ || finished_) {
      pending = {};
      continue;
    }
    ssize_t rv = nghttp2_session_mem_recv(ng_, reinterpret_cast<const uint8_t*>(pending.data()), pending.size());
    pending = {};
    if (rv < 0) {
      log::debug("HTTP/2 from a client: {}", nghttp2_strerror(static_cast<int>(rv)));
      // A GOAWAY, unless nghttp2 queued one already (a flood of frames that
      // each want an answer ends here too).
      nghttp2_session_terminate_session(
          ng_, rv == NGHTTP2_ERR_FLOODED ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR);
      stop_reading_ = true;
    }
    signal_write();
  }
  hard_close();
  while (running_ > 0 || writer_running_) {
    main_waiting_ = true;
    main_wake_.expires_at(asio::steady_timer::time_point::max());
    co_await main_wake_.async_wait(tok);
    main_waiting_ = false;
  }
  hooks_.unwatch(&wt_);
  hooks_.unwatch(&ctl_);
}

// ---------------------------------------------------------------------------
// H2Stream

H2Stream::H2Stream(H2Session& s, int32_t id) : s_(s), id_(id), rd_wake_(s.io()), wr_wake_(s.io()) {}
H2Stream::~H2Stream() = default;

bool H2Stream::dead() const { return closed_ || s_.dead(); }

void H2Stream::wake_reader() {
  if (rd_waiting_) rd_wake_.cancel();
}
void H2Stream::wake_writer() {
  if (wr_waiting_) wr_wake_.cancel();
}

// Only while a pipeline runs and has not handed over the whole response:
// after that it waits on nothing upstream.
void H2Stream::abandoned() {
  if (!running_ || out_end_ || !abandon_) return;
  auto f = std::move(abandon_);
  abandon_ = nullptr;
  f();
}

void H2Stream::cancel() {
  if (rd_waiting_) {
    rd_abort_ = true;
    rd_wake_.cancel();
  }
  if (wr_waiting_) {
    wr_abort_ = true;
    wr_wake_.cancel();
  }
}

awaitable<Stream::Result> H2Stream::read_some(asio::mutable_buffer b) {
  char* dst = static_cast<char*>(b.data());
  const size_t cap = b.size();
  for (;;) {
    size_t n = 0;
    size_t consumed = 0;
    while (n < cap) {
      if (head_off_ < head_.size()) {
        size_t k = std::min(cap - n, head_.size() - head_off_);
        std::memcpy(dst + n, head_.data() + head_off_, k);
        head_off_ += k;
        n += k;
        continue;
      }
      if (frame_off_ < frame_.size()) {
        size_t k = std::min(cap - n, frame_.size() - frame_off_);
        std::memcpy(dst + n, frame_.data() + frame_off_, k);
        frame_off_ += k;
        n += k;
        continue;
      }
      if (closed_) break;  // a reset stream's buffered DATA is dropped
      const size_t avail = body_.size() - body_off_;
      if (avail > 0) {
        if (chunked_ && chunk_left_ == 0) {
          char hex[24];
          int len = std::snprintf(hex, sizeof hex, "%zx\r\n", avail);
          frame_.assign(hex, static_cast<size_t>(len));
          frame_off_ = 0;
          chunk_left_ = avail;
          continue;
        }
        size_t k = std::min(cap - n, avail);
        if (chunked_) k = std::min<size_t>(k, chunk_left_);
        std::memcpy(dst + n, body_.data() + body_off_, k);
        body_off_ += k;
        n += k;
        consumed += k;
        if (body_off_ == body_.size()) {
          body_.clear();
          body_off_ = 0;
        }
        if (chunked_) {
          chunk_left_ -= k;
          if (chunk_left_ == 0) {
            frame_.assign("\r\n");
            frame_off_ = 0;
          }
        }
        continue;
      }
      if (in_end_ && chunked_ && !in_eof_) {
        in_eof_ = true;
        frame_.assign("0\r\n").append(trailers_).append("\r\n");
        frame_off_ = 0;
        continue;
      }
      break;
    }
    if (consumed > 0 && !dead()) {
      // The client may send as much again.
      nghttp2_session_consume(s_.ng(), id_, consumed);
      s_.signal_write();
    }
    if (n > 0) co_return Result{error_code(), n};
    if (dead()) co_return Result{asio::error::connection_reset, 0};
    if (in_end_) {
      in_eof_ = true;
      co_return Result{asio::error::eof, 0};
    }
    if (rd_abort_) {
      rd_abort_ = false;
      co_return Result{asio::error::operation_aborted, 0};
    }
    rd_waiting_ = true;
    rd_wake_.expires_at(asio::steady_timer::time_point::max());
    co_await rd_wake_.async_wait(tok);
    rd_waiting_ = false;
    if (rd_abort_) {
      rd_abort_ = false;
      co_return Result{asio::error::operation_aborted, 0};
    }
  }
}

awaitable<Stream::Result> H2Stream::write(std::array<asio::const_buffer, 2> bufs) {
  if (dead() || app_closed_ || reset_sent_) co_return Result{asio::error::broken_pipe, 0};
  size_t total = 0;
  for (const auto& b : bufs) {
    if (b.size() == 0) continue;
    if (!conv_.feed(std::string_view(static_cast<const char*>(b.data()), b.size()), *this)) {
      log::warn("HTTP/2 stream {}: the response could not be translated; resetting the stream", id_);
      reset(NGHTTP2_INTERNAL_ERROR);
      co_return Result{asio::error::broken_pipe, total};
    }
    total += b.size();
  }
  s_.after_output(*this);
  while (queued() > kOutBound) {
    if (dead()) co_return Result{asio::error::connection_reset, total};
    wr_waiting_ = true;
    wr_wake_.expires_at(asio::steady_timer::time_point::max());
    co_await wr_wake_.async_wait(tok);
    wr_waiting_ = false;
    if (wr_abort_) {
      wr_abort_ = false;
      co_return Result{asio::error::operation_aborted, total};
    }
  }
  co_return Result{error_code(), total};
}

void H2Stream::head(int status, const std::vector<http::Header>& fields, bool has_body) {
  if (dead() || reset_sent_) return;
  char code[4];
  std::snprintf(code, sizeof code, "%03d", status);
  auto& nva = s_.nva();
  nva.clear();
  nva.push_back({(uint8_t*)":status", (uint8_t*)code, 7, 3, NGHTTP2_NV_FLAG_NONE});
  for (const auto& f : fields)
    nva.push_back({(uint8_t*)f.name.data(), (uint8_t*)f.value.data(), f.name.size(), f.value.size(),
                   NGHTTP2_NV_FLAG_NONE});
  nghttp2_data_provider prd;
  prd.source.ptr = this;
  prd.read_callback = H2Session::read_data;
  nghttp2_submit_response(s_.ng(), id_, nva.data(), nva.size(), has_body ? &prd : nullptr);
  submitted_ = true;
}

void H2Stream::data(const char* p, size_t n) {
  if (dead() || reset_sent_) return;
  out_.append(p, n);
}

void H2Stream::trailers(const std::vector<http::Header>& fields) {
  trailer_store_.clear();
  for (const auto& f : fields) {
    trailer_store_.emplace_back(f.name);
    trailer_store_.emplace_back(f.value);
  }
}

void H2Stream::end() { out_end_ = true; }

void H2Stream::reset(uint32_t code) {
  if (reset_sent_ || dead()) return;
  reset_sent_ = true;
  nghttp2_submit_rst_stream(s_.ng(), NGHTTP2_FLAG_NONE, id_, code);
  s_.signal_write();
}

void H2Stream::finish_response() {
  if (dead() || reset_sent_ || app_closed_) return;
  if (!conv_.finish(*this)) {
    // The pipeline stopped before the response was whole.
    reset(NGHTTP2_INTERNAL_ERROR);
    return;
  }
  if (!in_end_) rst_after_end_ = true;
  s_.after_output(*this);
}

awaitable<void> H2Stream::shutdown_send() {
  finish_response();
  co_return;
}

void H2Stream::close() {
  if (app_closed_) return;
  finish_response();
  app_closed_ = true;
  // DATA already buffered is not going to be read: hand the windows back.
  if (size_t left = body_.size() - body_off_; left > 0 && !dead()) nghttp2_session_consume(s_.ng(), id_, left);
  body_.clear();
  body_off_ = 0;
  wake_reader();
  wake_writer();
}

// ---------------------------------------------------------------------------

awaitable<void> serve_h2(asio::io_context& io, Stream& conn, std::string_view already, const H2Options& opts,
                         H2Hooks& hooks) {
  auto session = std::make_unique<H2Session>(io, conn, opts, hooks);
  co_await session->run(already);
}

}  // namespace holdfast::transport
