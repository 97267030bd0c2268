#include "proxy/pipeline.h"

#include <fmt/format.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>
#include <cstring>

#include "core/log.h"
#include "http/codec.h"
#include "http/grpc.h"
#include "http/head_writer.h"
#include "http/uri.h"
#include "proxy/access_log.h"
#include "proxy/real_ip.h"
#include "proxy/side_request.h"
#include "proxy/upstream_h2.h"
#include "proxy/worker.h"
#include "router/ipmatch.h"
#include "snapshot/snapshot.h"
#include "tls/client_context.h"
#include "tls/cert_table.h"
#include "transport/io.h"
#include "transport/tls_stream.h"

namespace holdfast::proxy {
using namespace holdfast::http;
using namespace holdfast::transport;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using asio::awaitable;
using boost::system::error_code;
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

namespace {

constexpr size_t kBufSize = 16 * 1024;

const char* reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Moved Temporarily";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Not Allowed";
    case 408: return "Request Time-out";
    case 413: return "Request Entity Too Large";
    case 414: return "Request-URI Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Temporarily Unavailable";
    case 504: return "Gateway Time-out";
    default: return "Unknown";
  }
}

// The body nginx (and so APISIX) sends with the errors it generates itself.
std::string error_page(int status) {
  return fmt::format(
      "<html>\r\n<head><title>{0} {1}</title></head>\r\n<body>\r\n<center><h1>{0} {1}</h1></center>\r\n"
      "<hr><center>holdfast</center>\r\n</body>\r\n</html>\r\n",
      status, reason_phrase(status));
}

bool is_hop_by_hop(std::string_view name) {
  static constexpr std::string_view kHop[] = {"connection", "keep-alive", "proxy-connection", "te",
                                              "trailer", "transfer-encoding", "upgrade"};
  for (auto h : kHop)
    if (iequals(name, h)) return true;
  return false;
}

bool in_list(const std::vector<std::string>& names, std::string_view name) {
  for (const auto& n : names)
    if (iequals(n, name)) return true;
  return false;
}

bool in_pairs(const plugins::HeaderEdits& list, std::string_view name) {
  for (const auto& e : list)
    if (iequals(e.name, name)) return true;
  return false;
}

// Names listed in the Connection header are hop-by-hop too (RFC 9110 §7.6.1).
bool has_encoded_slash(std::string_view path) {
  for (size_t i = 0; i + 2 < path.size(); ++i)
    if (path[i] == '%' && path[i + 1] == '2' && (path[i + 2] == 'f' || path[i + 2] == 'F')) return true;
  return false;
}

bool listed_in_connection(const std::vector<Header>& headers, std::string_view name) {
  for (const auto& h : headers)
    if (iequals(h.name, "connection") && header_has_token(h.value, name)) return true;
  return false;
}

std::string lower_host(std::string_view host_header) {
  std::string_view h = host_header;
  if (!h.empty() && h[0] == '[') {
    auto close = h.find(']');
    h = h.substr(0, close == std::string_view::npos ? h.size() : close + 1);
  } else if (auto colon = h.find(':'); colon != std::string_view::npos) {
    h = h.substr(0, colon);
  }
  if (!h.empty() && h.back() == '.') h.remove_suffix(1);  // "example.com." is example.com, as in nginx
  std::string out(h);
  for (auto& c : out) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  return out;
}

enum class Phase { rewrite, access };

// How much of the request body `chain`'s plugins want read whole before its
// rewrite (Plugin::wants_request_body): the largest bound asked, 0 for none
// or when it was read already. Plain, so that the common case enters no
// coroutine.
uint64_t body_wanted(const plugins::Chain& chain, const plugins::RequestCtx& ctx) {
  uint64_t cap = 0;
  if (!ctx.body)
    for (const auto& e : chain.entries) cap = std::max(cap, e.plugin->wants_request_body(ctx));
  return cap;
}

struct Exchange;  // forward

// A request body streaming to an HTTP/2 upstream (grpc) while the response
// streams back: the relay runs beside the response (bidirectional gRPC
// calls need both at once) and handle() waits for it before the next
// request. Its own deadlines, so that the two directions do not share one.
struct Duplex {
  explicit Duplex(asio::io_context& io) : done(io, std::chrono::steady_clock::time_point::max()) {}
  std::shared_ptr<Stream> up;
  Timed src, dst;
  asio::steady_timer done;
  bool finished = false;
  bool ok = false;
};

class Connection {
 public:
  Connection(Worker& w, Stream& stream, const ConnInfo& info) : w_(w), s_(stream), info_(info) {
    // An HTTP/2 stream's head is synthesised and small, and its body is
    // flow-controlled in 16 KiB frames: a smaller buffer per stream (it
    // grows when a head needs it).
    in_.data.resize(info.http2 ? kBufSize / 4 : kBufSize);
    timed_.stream = &s_;
  }

  awaitable<void> run();
  void preload(std::string_view bytes) {
    if (bytes.empty()) return;
    if (bytes.size() > in_.data.size()) in_.data.resize(bytes.size());
    std::memcpy(in_.data.data(), bytes.data(), bytes.size());
    in_.end = bytes.size();
  }

 private:
  awaitable<bool> read_head(bool first);
  awaitable<bool> read_body_for_router(plugins::RequestCtx& ctx, uint64_t cap = 0);
  awaitable<bool> handle();
  bool mtls_allows(const plugins::RequestCtx& ctx) const;
  const snapshot::CompiledRoute* match_route(const snapshot::Snapshot& snap, plugins::RequestCtx& ctx);
  awaitable<bool> run_phase(const plugins::Chain& chain, Phase phase, plugins::RequestCtx& ctx);
  awaitable<plugins::Action> side_call(plugins::RequestCtx& ctx, const plugins::Entry& e, plugins::SideRequest& side);
  awaitable<bool> send_simple(int status, std::string_view body, bool keep,
                              const plugins::HeaderEdits& extra = {}, std::string_view ctype = "application/json");
  awaitable<bool> send_plugin_response(plugins::RequestCtx& ctx, const snapshot::CompiledRoute* route);
  awaitable<bool> proxy(plugins::RequestCtx& ctx, const snapshot::CompiledRoute& route);
  void run_header_filters(plugins::RequestCtx& ctx, const snapshot::CompiledRoute* route);
  size_t wants_body(const plugins::RequestCtx& ctx, const snapshot::CompiledRoute& route) const;
  void run_body_filters(plugins::RequestCtx& ctx, const snapshot::CompiledRoute& route, std::string& body);
  awaitable<bool> collect_body(UpstreamConn& up, const ResponseHead& resp, double timeout, size_t limit,
                               std::string& out, bool& at_end);
  void run_log(plugins::RequestCtx& ctx, const snapshot::CompiledRoute* route, int status, uint64_t bytes);
  std::string upstream_host_value(const plugins::RequestCtx& ctx, const snapshot::CompiledUpstream& up,
                                  const model::UpstreamNode& node, const char** by) const;
  std::string upstream_head(const plugins::RequestCtx& ctx, const snapshot::CompiledUpstream& up,
                            const model::UpstreamNode& node, bool websocket);
  awaitable<bool> tunnel(UpstreamConn& up, double idle_timeout);
  awaitable<void> linger();
  awaitable<void> duplex_body(Duplex* d, double send_timeout);
  awaitable<bool> end_duplex();

  Worker& w_;
  Stream& s_;
  const ConnInfo& info_;
  Timed timed_;
  Buf in_;
  RequestHead req_;
  std::string head_copy_;   // owns the request head while its body streams
  uint64_t head_bytes_sent_ = 0;  // the response head of this request, as written ($bytes_sent)
  std::string body_payload_;  // a chunked body read for the router, decoded
  std::string_view body_view_;  // the body read for the router (RequestCtx::body)
  bool continue_sent_ = false;  // this request's 100 Continue went out
  std::string resp_head_copy_;  // owns the response head while a body filter reads the body
  bool body_consumed_ = false;
  bool linger_ = false;     // close with a lingering read (after an error response)
  bool streamed_ = false;   // the body streamed through in_ (begin already advanced)
  plugins::Chain merged_;   // route chain with the consumer's plugins merged in
  const plugins::Chain* chain_ = nullptr;  // the route's effective chain for this request
  const snapshot::Snapshot* snap_ = nullptr;  // serving this request (handle() holds it)
  router::IpAddr real_addr_;                   // the client address real_ip_header gave
  const router::IpAddr* client_addr_ = nullptr;  // this request's client: &real_addr_ or the peer's
  // A detached side request (proxy-mirror) a plugin asked for: sent with
  // the request's body once the request goes upstream, never waited for.
  std::shared_ptr<plugins::SideRequest> mirror_;
  std::unique_ptr<Duplex> duplex_;  // a request body still streaming to an HTTP/2 upstream

  const plugins::Chain* global_chain() const { return snap_ ? &snap_->global : nullptr; }

  // Bytes of the request body that sit in the buffer after the head when the
  // whole body is there (0 for no body).
  size_t buffered_body_bytes() const {
    if (req_.body == BodyKind::length) return static_cast<size_t>(req_.content_length);
    if (req_.body != BodyKind::chunked) return 0;
    ChunkedValidator v;
    size_t used = 0;
    v.feed(std::string_view(in_.data.data() + in_.begin + req_.head_bytes, in_.avail() - req_.head_bytes), used);
    return used;
  }
};

awaitable<void> Connection::run() {
  w_.watch(&timed_);
  bool first = true;
  try {
    for (;;) {
      if (!co_await read_head(first)) break;
      first = false;
      w_.active_requests_++;
      w_.requests_total_.fetch_add(1, std::memory_order_relaxed);
      bool keep = co_await handle();
      w_.active_requests_--;
      if (!keep || w_.draining() || info_.http2) break;
    }
  } catch (const std::exception& e) {
    log::error("connection from {}:{} failed: {}", info_.remote_ip, info_.remote_port, e.what());
  }
  if (info_.http2) {
    // One request per HTTP/2 stream; no lingering close (the session resets
    // a stream whose body was not read), and the session counts the
    // connection.
    co_await s_.shutdown_send();
    w_.unwatch(&timed_);
    s_.close();
    co_return;
  }
  if (linger_) {
    co_await linger();
  } else if (!s_.plain()) {
    // TLS: close_notify, so that the end of a close-delimited response is
    // authenticated (linger() sends it too).
    timed_.fired = false;
    timed_.deadline = now_ms() + ms(w_.cfg().send_timeout);
    co_await s_.shutdown_send();
  }
  w_.unwatch(&timed_);
  s_.close();
  w_.open_conns_--;
  w_.connection_closed();
}

// After an error response that closes the connection, the client may still
// be sending (a body, pipelined requests). Closing with unread data makes the
// kernel send a reset, and the client can lose the response before it reads
// it. So, as nginx's lingering close: stop writing, then read and discard
// until the client closes, it is silent for kLingerTimeout, or kLingerTime
// has passed.
awaitable<void> Connection::linger() {
  constexpr double kLingerTimeout = 5;
  constexpr int64_t kLingerTime = 30'000;
  timed_.fired = false;
  timed_.deadline = now_ms() + ms(w_.cfg().send_timeout);  // a TLS close_notify is a write
  co_await s_.shutdown_send();
  if (!s_.is_open()) co_return;
  error_code ec;
  const int64_t until = now_ms() + kLingerTime;
  timed_.idle = timed_.reusable = true;  // neither a drain nor a full worker waits for it
  while (!w_.draining() && now_ms() < until) {
    in_.begin = in_.end = 0;
    bool to = false;
    size_t n = co_await read_some(s_, timed_, in_, std::min(kLingerTimeout, (until - now_ms()) / 1000.0), ec, to);
    if (ec || n == 0) break;
  }
  timed_.idle = timed_.reusable = false;
}

// Reads until a full request head is parsed into req_. False: close quietly
// (EOF, timeout, drain) or after an error response was sent.
awaitable<bool> Connection::read_head(bool first) {
  const NodeConfig& cfg = w_.cfg();
  head_copy_.clear();
  int64_t head_deadline = 0;
  for (;;) {
    if (in_.avail() > 0) {
      ParseError perr;
      auto st = parse_request(std::string_view(in_.data.data() + in_.begin, in_.avail()), cfg.limits, req_, perr);
      if (st == ParseStatus::complete) co_return true;
      if (st == ParseStatus::error) {
        log::info("bad request from {}: {}", info_.remote_ip, perr.reason);
        co_await send_simple(perr.status, "", false, {}, "");
        co_return false;
      }
    }
    if (w_.draining() && in_.avail() == 0 && !info_.http2) co_return false;
    in_.compact();
    if (in_.end == in_.data.size()) {
      if (in_.data.size() >= cfg.limits.max_head_bytes + kBufSize) {
        co_await send_simple(431, "", false, {}, "");
        co_return false;
      }
      in_.data.resize(in_.data.size() * 2);
    }
    // client_header_timeout bounds the whole head, from the connection's
    // start for a first request and from the first byte for later ones (as
    // nginx): a client trickling one byte at a time cannot extend it.
    bool waiting = in_.avail() == 0;
    timed_.idle = waiting;
    timed_.reusable = waiting && !first;  // a new connection is not shed before its first request
    if (head_deadline == 0 && (first || !waiting)) head_deadline = now_ms() + ms(cfg.client_header_timeout);
    int64_t deadline = waiting && !first ? now_ms() + ms(cfg.keepalive_timeout) : head_deadline;
    error_code ec;
    bool timed_out = false;
    size_t n = co_await read_some_until(s_, timed_, in_, deadline, ec, timed_out);
    timed_.idle = timed_.reusable = false;
    if (ec || n == 0) co_return false;
  }
}

// APISIX reads the body when a route's vars ask for post_arg_* or
// post_arg.* (ngx.req.read_body while matching). The router here is
// synchronous, so when the snapshot has such a route every request's body is
// read whole before routing, if it fits apisix.max_post_args_readable_size;
// a larger body streams as usual and those variables are unset for it (in
// APISIX: an error and nil). Plugins that ask for the body (`cap`: theirs;
// 0: the router's) come here too. False: the client failed; close.
awaitable<bool> Connection::read_body_for_router(plugins::RequestCtx& ctx, uint64_t cap) {
  const NodeConfig& cfg = w_.cfg();
  if (cap == 0) cap = cfg.max_post_args_bytes;
  if (req_.body != BodyKind::length && req_.body != BodyKind::chunked) co_return true;
  if (req_.body == BodyKind::length && req_.content_length > cap) co_return true;
  // in_ may grow: req_ must not point into it.
  head_copy_.assign(in_.data.data() + in_.begin, req_.head_bytes);
  ParseError perr;
  parse_request(head_copy_, cfg.limits, req_, perr);
  // Chunked framing costs at most a few bytes per chunk beyond the payload;
  // allow a generous margin, then give up on buffering.
  const uint64_t raw_cap = req_.body == BodyKind::length ? req_.content_length : cap + cap / 2 + 4096;
  const int64_t deadline = now_ms() + ms(cfg.client_body_timeout);
  for (;;) {
    const size_t have = in_.avail() - req_.head_bytes;
    const char* start = in_.data.data() + in_.begin + req_.head_bytes;
    if (req_.body == BodyKind::length) {
      if (have >= req_.content_length) {
        body_view_ = std::string_view(start, req_.content_length);
        break;
      }
    } else {
      ChunkedValidator v;
      size_t used = 0;
      body_payload_.clear();
      auto r = v.feed(std::string_view(start, have), used, &body_payload_);
      if (r == ChunkedValidator::Result::done) {
        if (v.payload_bytes() > cap) co_return true;
        body_view_ = body_payload_;
        break;
      }
      // Bad framing is answered by the proxy path; a body past the cap streams.
      if (r == ChunkedValidator::Result::error || v.payload_bytes() > cap || have >= raw_cap) co_return true;
    }
    if (req_.expect_continue && req_.minor == 1 && !continue_sent_) {
      static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
      bool t = false;
      if (!co_await write_all(s_, timed_, asio::buffer(k100), cfg.send_timeout, t)) co_return false;
      continue_sent_ = true;
    }
    in_.compact();
    if (in_.end == in_.data.size()) {
      // Double, up to the head and raw_cap bytes of body (have < raw_cap).
      const uint64_t body_room = std::min<uint64_t>(raw_cap, std::max<uint64_t>(2 * have, have + kBufSize));
      in_.data.resize(req_.head_bytes + static_cast<size_t>(body_room));
    }
    error_code ec;
    bool timed_out = false;
    size_t n = co_await read_some_until(s_, timed_, in_, deadline, ec, timed_out);
    if (ec || n == 0) co_return false;
  }
  ctx.body = &body_view_;
  co_return true;
}

awaitable<bool> Connection::send_simple(int status, std::string_view body, bool keep,
                                        const plugins::HeaderEdits& extra, std::string_view ctype) {
  std::string out;
  HeadWriter hw(out, "holdfast");
  // A gRPC client reads a status, not an HTTP error: an error Holdfast
  // generates for a gRPC request goes out as a Trailers-Only response (200,
  // grpc-status, grpc-message), as Envoy answers; APISIX sends the HTTP
  // status. The message is the error_msg of a JSON body, else the reason.
  const bool grpc = status >= 400 && req_.head_bytes && is_grpc_content_type(req_.header("content-type"));
  if (grpc) {
    std::string_view msg = reason_phrase(status);
    constexpr std::string_view kMsg = "{\"error_msg\":\"";
    if (body.starts_with(kMsg)) {
      auto end = body.find('"', kMsg.size());
      if (end != std::string_view::npos) msg = body.substr(kMsg.size(), end - kMsg.size());
    }
    hw.status_line(200, "OK");
    hw.header("Server", "holdfast");
    hw.header("Content-Type", "application/grpc");
    hw.header("grpc-status", std::to_string(grpc_status_for_http(status, !req_.header("grpc-timeout").empty())));
    hw.header("grpc-message", grpc_message_encode(msg));
    for (const auto& e : extra)
      if (!iequals(e.name, "content-type") && !iequals(e.name, "content-length")) hw.header(e.name, e.value, e.plugin);
    body = {};
  } else {
    hw.status_line(status, reason_phrase(status));
    hw.header("Server", "holdfast");
    if (!ctype.empty() && !in_pairs(extra, "content-type")) hw.header("Content-Type", ctype);
    for (const auto& e : extra) hw.header(e.name, e.value, e.plugin);
  }
  hw.header("Content-Length", std::to_string(body.size()));
  if (!keep) hw.header("Connection", "close");
  hw.end();
  head_bytes_sent_ = out.size();
  if (!hw.ok()) {
    log::error("{} {}: refused to send the {} response: {}; answering 500", req_.method, req_.path, status, hw.fault());
    static constexpr std::string_view k500 =
        "HTTP/1.1 500 Internal Server Error\r\nServer: holdfast\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    out.assign(k500);
    head_bytes_sent_ = out.size();
    body = {};
    keep = false;
  }
  out.append(body);
  bool to = false;
  bool ok = co_await write_all(s_, timed_, asio::buffer(out), w_.cfg().send_timeout, to);
  if (!keep && status >= 400) linger_ = ok;
  co_return ok && keep;
}

awaitable<bool> Connection::run_phase(const plugins::Chain& chain, Phase phase, plugins::RequestCtx& ctx) {
  for (const auto& e : chain.entries) {
    if (e.filter && !e.filter->eval(ctx)) continue;
    ctx.plugin = e.def->name;
    plugins::Action a = phase == Phase::rewrite ? e.plugin->rewrite(ctx) : e.plugin->access(ctx);
    ctx.plugin = nullptr;
    if (ctx.side) {
      std::shared_ptr<plugins::SideRequest> side = std::move(ctx.side);
      ctx.side.reset();
      if (side->detached) {
        mirror_ = std::move(side);
      } else if (a == plugins::Action::call) {
        a = co_await side_call(ctx, e, *side);
      }
    }
    if (a == plugins::Action::call) a = plugins::Action::next;  // nothing to wait for
    if (ctx.delay_seconds > 0) {
      asio::steady_timer t(w_.io());
      t.expires_after(std::chrono::milliseconds(ms(ctx.delay_seconds)));
      ctx.delay_seconds = 0;
      co_await t.async_wait(tok);
    }
    if (a == plugins::Action::respond) {
      if (ctx.resp_status >= 400 && e.has_error_response) ctx.resp_body = e.error_response;
      co_return true;
    }
  }
  co_return false;
}

// Action::call: sends the plugin's side request (with the client's body
// first read whole when it asked for it) and lets the plugin decide on the
// answer. The connection's coroutine waits; the worker does not.
awaitable<plugins::Action> Connection::side_call(plugins::RequestCtx& ctx, const plugins::Entry& e,
                                                 plugins::SideRequest& side) {
  if (side.with_client_body && req_.body != BodyKind::none) {
    if (!ctx.body || ctx.body->size() > side.client_body_max) {
      const std::string_view* had = ctx.body;
      ctx.body = nullptr;
      if (!co_await read_body_for_router(ctx, side.client_body_max)) {
        req_.keep_alive = false;  // the client failed while sending its body
        ctx.respond(400, error_page(400), "text/html");
        co_return plugins::Action::respond;
      }
      if (!ctx.body) {
        // As APISIX's core.request.get_body(max) failing: 413.
        ctx.body = had;
        ctx.respond(413, error_page(413), "text/html");
        co_return plugins::Action::respond;
      }
    }
    side.body.assign(ctx.body->data(), ctx.body->size());
  }
  const plugins::SideResponse res = co_await side_exchange(w_, side);
  ctx.plugin = e.def->name;
  plugins::Action a = e.plugin->resume(ctx, res);
  ctx.plugin = nullptr;
  co_return a;
}

// Global entries first, then the route's effective chain; `_meta.filter`
// applies in every phase.
template <typename F>
void for_each_entry(const plugins::RequestCtx& ctx, const plugins::Chain* global, const plugins::Chain* chain, F&& f) {
  auto run = [&](const plugins::Chain& c) {
    for (const auto& e : c.entries)
      if (!e.filter || e.filter->eval(ctx)) f(e);
  };
  if (global) run(*global);
  if (chain) run(*chain);
}

void Connection::run_header_filters(plugins::RequestCtx& ctx, const snapshot::CompiledRoute* route) {
  for_each_entry(ctx, global_chain(), route ? chain_ : nullptr, [&](const plugins::Entry& e) {
    ctx.plugin = e.def->name;
    e.plugin->header_filter(ctx);
    ctx.plugin = nullptr;
  });
}

size_t Connection::wants_body(const plugins::RequestCtx& ctx, const snapshot::CompiledRoute& route) const {
  size_t wants = 0;
  for_each_entry(ctx, global_chain(), chain_, [&](const plugins::Entry& e) { wants = std::max(wants, e.plugin->wants_body(ctx)); });
  return wants;
}

void Connection::run_body_filters(plugins::RequestCtx& ctx, const snapshot::CompiledRoute& route, std::string& body) {
  for_each_entry(ctx, global_chain(), chain_, [&](const plugins::Entry& e) { e.plugin->body_filter(ctx, body); });
}

// Reads the upstream response body (dechunked) into `out` for the body
// filters: all of it, or its first `limit` bytes (APISIX's hold_body_chunk
// with max_resp_body_size: a longer body is cut there). `at_end`: the body
// was read to its end (the connection can be reused). False when it could
// not be read (invalid chunking, a timeout, cut short by the upstream).
awaitable<bool> Connection::collect_body(UpstreamConn& up, const ResponseHead& resp, double timeout, size_t limit,
                                         std::string& out, bool& at_end) {
  ChunkedValidator v;
  uint64_t remaining = resp.content_length;
  at_end = false;
  for (;;) {
    std::string_view avail(up.buf.data.data() + up.buf.begin, up.buf.avail());
    size_t take = avail.size();
    if (resp.body == BodyKind::length) {
      take = static_cast<size_t>(std::min<uint64_t>(take, remaining));
      remaining -= take;
      at_end = remaining == 0;
      out.append(avail.substr(0, take));
    } else if (resp.body == BodyKind::chunked) {
      auto r = v.feed(avail, take, &out);
      if (r == ChunkedValidator::Result::error) co_return false;
      at_end = r == ChunkedValidator::Result::done;
    } else {
      out.append(avail);
    }
    up.buf.begin += take;
    if (out.size() >= limit) {
      // More than the bound: the rest is not read (nor sent).
      if (out.size() > limit) at_end = false;
      out.resize(limit);
      co_return true;
    }
    if (at_end) co_return true;
    up.buf.begin = up.buf.end = 0;
    error_code ec;
    bool to = false;
    size_t n = co_await read_some(*up.stream, up.timed, up.buf, timeout, ec, to);
    if (ec || n == 0) {
      if (resp.body == BodyKind::until_close && !to) co_return true;
      co_return false;
    }
  }
}

void Connection::run_log(plugins::RequestCtx& ctx, const snapshot::CompiledRoute* route, int status, uint64_t bytes) {
  ctx.status = status;
  ctx.bytes_sent = head_bytes_sent_ + bytes;
  // A chunked body that streamed through is not counted (its size is known
  // to nobody here); one that was read whole is.
  if (!streamed_ && req_.body == BodyKind::length && in_.avail() >= req_.head_bytes + req_.content_length)
    ctx.req_body_seen = std::string_view(in_.data.data() + in_.begin + req_.head_bytes, req_.content_length);
  ctx.request_length = req_.head_bytes + (req_.body == BodyKind::length    ? req_.content_length
                                          : req_.body == BodyKind::chunked && !streamed_ ? buffered_body_bytes()
                                                                                          : 0);
  for_each_entry(ctx, global_chain(), route ? chain_ : nullptr, [&](const plugins::Entry& e) { e.plugin->log(ctx); });
  AccessLog* al = w_.access_log();
  if (al && al->enabled()) {
    auto dur = std::chrono::duration<double>(std::chrono::steady_clock::now() - ctx.start).count();
    al->append(fmt::format("{} - - \"{} {} {}\" {} {} {:.3f} \"{}\" route={}", ctx.remote_addr, req_.method,
                           req_.target, info_.http2 ? "HTTP/2.0" : req_.minor == 0 ? "HTTP/1.0" : "HTTP/1.1", status, bytes, dur, req_.header("user-agent"),
                           route ? route->id : "-"));
  }
}

awaitable<bool> Connection::send_plugin_response(plugins::RequestCtx& ctx, const snapshot::CompiledRoute* route) {
  ctx.response_from_plugin = true;
  ctx.upstream_status = ctx.resp_status;
  run_header_filters(ctx, route);
  int status = ctx.resp_status_override.value_or(ctx.resp_status);
  const std::string& body = ctx.resp_body_override ? *ctx.resp_body_override : ctx.resp_body;
  plugins::HeaderEdits headers;
  for (const auto& e : ctx.resp_headers)
    if (!in_list(ctx.resp_remove, e.name) && !in_pairs(ctx.resp_set, e.name)) headers.push_back(e);
  for (const auto& e : ctx.resp_set) headers.push_back(e);
  for (const auto& e : ctx.resp_add) headers.push_back(e);
  // A body the plugin did not read is not worth draining: close instead.
  bool keep = req_.keep_alive && (req_.body == BodyKind::none || (req_.body == BodyKind::length && req_.content_length == 0));
  if (keep && req_.minor == 0) headers.push_back({"Connection", "keep-alive"});
  if (ctx.resp_body_keep) ctx.resp_body_seen.assign(body, 0, std::min(body.size(), ctx.resp_body_keep));
  bool r = co_await send_simple(status, req_.method == "HEAD" ? std::string_view() : std::string_view(body), keep,
                                headers, "");
  run_log(ctx, route, status, body.size());
  co_return r;
}

// APISIX's verify_https_client: a client CA on the SSL object is not
// bypassed by choosing the path, the Host or a session from another name.
bool Connection::mtls_allows(const plugins::RequestCtx& ctx) const {
  const TlsConnInfo& t = *info_.tls;
  const tls::SslObject* by_sni = t.object.get();
  const bool verified = t.vars.client_verify == "SUCCESS";
  auto refuse = [&](std::string_view why) {
    log::info("mtls: 400 to {}:{} (sni {}, host {}): {}", info_.remote_ip, info_.remote_port, info_.server_name,
              log::json_escape(ctx.host), why);
    return false;
  };
  // With skip_mtls_uri_regex the handshake let anyone in: only matching
  // paths are served without a verified certificate. Without it the
  // handshake required one, unless the session was resumed (checked again
  // here, and below by its SNI).
  if (by_sni && by_sni->client && !verified) {
    bool skip = false;
    for (const auto& re : by_sni->client->skip_mtls_uri_regex) {
      // A regex error (the match limit) skips nothing: the request needs a
      // certificate like any other.
      std::string why;
      RegexMatch m = re->find(ctx.uri, 0, nullptr, &why);
      if (m == RegexMatch::error) log::error("mtls: skip_mtls_uri_regex '{}' failed: {}", re->pattern(), why);
      if (m == RegexMatch::match) { skip = true; break; }
    }
    if (!skip) return refuse(t.vars.client_verify == "NONE" ? "no client certificate"
                                                             : "client certificate not verified");
  }
  // The object the Host would have selected (APISIX matches the SSL router
  // by Host) and the one the SNI did: if either asks for client
  // certificates, the Host must be the SNI.
  const tls::SslObject* by_host = t.certificates ? t.certificates->match(ctx.host) : nullptr;
  const bool host_needs = by_host && by_host->client;
  if (host_needs && !verified && by_host != by_sni)
    return refuse("the Host's SSL object requires a client certificate");
  if ((host_needs || (by_sni && by_sni->client)) && ctx.host != info_.server_name)
    return refuse("the Host differs from the SNI of a client-verified connection");
  if ((host_needs || (by_sni && by_sni->client)) && t.session_sni_mismatch)
    return refuse("the resumed session was made for another SNI");
  return true;
}

const snapshot::CompiledRoute* Connection::match_route(const snapshot::Snapshot& snap, plugins::RequestCtx& ctx) {
  router::MatchInput in;
  in.method = req_.method;
  // As APISIX's match_uri_encoded_slash: the router (and route vars reading
  // $uri) see the path with %2F kept; everything after sees $uri again.
  std::optional<std::string> keep;
  if (w_.cfg().match_uri_encoded_slash && has_encoded_slash(req_.path))
    keep = http::match_uri_keep_encoded_slash(req_.path, ctx.uri);
  if (keep) std::swap(ctx.uri, *keep);
  in.path = ctx.uri;
  in.host = ctx.host;
  in.host_header = req_.host;
  in.remote_addr = client_addr_;
  in.vars = &ctx;
  int64_t idx = snap.router.match(in, &ctx.params);
  if (keep) std::swap(ctx.uri, *keep);
  return idx >= 0 ? &snap.routes[idx] : nullptr;
}

awaitable<bool> Connection::handle() {
  const NodeConfig& cfg = w_.cfg();
  plugins::RequestCtx ctx;
  ctx.start = std::chrono::steady_clock::now();
  ctx.req = &req_;
  ctx.worker = w_.id();
  // nginx's realip module, as APISIX configures it: a peer in real_ip_from
  // names the client in real_ip_header. Everything after sees that address.
  const ClientAddrConfig& ca = cfg.client_addr;
  if (auto a = real_client_addr(ca, req_, info_.remote_addr)) {
    real_addr_ = *a;
    client_addr_ = &real_addr_;
    ctx.remote_addr = a->str();
  } else {
    client_addr_ = &info_.remote_addr;
    ctx.remote_addr = info_.remote_ip;
  }
  ctx.realip_remote_addr = info_.remote_ip;
  // As APISIX, trust is decided on the peer ($realip_remote_addr).
  ctx.forwarded_trusted = ca.trusted_addresses && ca.trusted_addresses->match(info_.remote_addr);
  ctx.xff_dropped = ca.trusted_addresses && !ctx.forwarded_trusted;
  ctx.remote_port = info_.remote_port;
  ctx.server_port = info_.local_port;
  ctx.scheme = info_.scheme;
  ctx.http2 = info_.http2;
  ctx.tls = info_.tls ? &info_.tls->vars : nullptr;
  ctx.https_port = cfg.redirect_https_port;
  body_consumed_ = req_.body == BodyKind::none;
  streamed_ = false;
  head_bytes_sent_ = 0;
  continue_sent_ = false;
  mirror_.reset();
  auto snap = w_.snapshot();
  ctx.consumers = snap ? &snap->consumers : nullptr;
  ctx.metadata = snap ? &snap->metadata : nullptr;
  snap_ = snap.get();

  auto path = normalize_path(req_.path);
  if (!path) {
    co_await send_simple(400, "", false, {}, "");
    co_return false;
  }
  if (cfg.delete_uri_tail_slash && path->size() > 1 && path->back() == '/') path->pop_back();
  ctx.uri = std::move(*path);
  ctx.host = lower_host(req_.host);

  if (info_.tls && !mtls_allows(ctx)) {
    co_await send_simple(400, "", false, {}, "");
    co_return false;
  }

  if (!snap) {
    bool keep = co_await send_simple(503, "{\"error_msg\":\"no configuration loaded yet\"}\n", req_.keep_alive && body_consumed_);
    if (keep) in_.begin += req_.head_bytes;  // no body (body_consumed_)
    co_return keep;
  }

  if (snap->global_unavailable) {
    // Logged when the snapshot was compiled (the rule and the reference).
    bool keep = co_await send_simple(503, "{\"error_msg\":\"a global rule's plugin configuration is unavailable on this node\"}\n",
                                     req_.keep_alive && body_consumed_, {}, "application/json");
    if (keep) in_.begin += req_.head_bytes;  // no body (body_consumed_)
    co_return keep;
  }

  // Reject malformed chunked framing already in the buffer before any upstream sees it.
  if (req_.body == BodyKind::chunked) {
    ChunkedValidator v;
    size_t used = 0;
    auto r = v.feed(std::string_view(in_.data.data() + in_.begin + req_.head_bytes, in_.avail() - req_.head_bytes), used);
    if (r == ChunkedValidator::Result::error) {
      log::info("bad request from {}: invalid chunked body", info_.remote_ip);
      co_await send_simple(400, "", false, {}, "");
      co_return false;
    }
    if (cfg.limits.max_body_bytes && v.payload_bytes() > cfg.limits.max_body_bytes) {
      co_await send_simple(413, "", false, {}, "");
      co_return false;
    }
  }

  ctx.graphql_max_size = cfg.graphql_max_size;
  if (snap->router_reads_body && !co_await read_body_for_router(ctx, cfg.max_post_args_bytes)) co_return false;
  if (uint64_t cap = body_wanted(snap->global, ctx); cap && !co_await read_body_for_router(ctx, cap)) co_return false;

  // Phases in APISIX order; `stop` means a plugin produced the response.
  const snapshot::CompiledRoute* route = nullptr;
  // Empty chains are skipped without entering a coroutine (the common case).
  bool stop = false;
  if (!snap->global.empty()) stop = co_await run_phase(snap->global, Phase::rewrite, ctx);
  if (!stop) route = match_route(*snap, ctx);
  if (route) {
    ctx.route_id = route->id;
    ctx.route = route->conf.get();
    ctx.service_name = route->service_name;
    if (!route->service_missing) ctx.service_id = route->conf->service_id;
  }
  if (!stop && !route) {
    if (!snap->global.empty()) stop = co_await run_phase(snap->global, Phase::access, ctx);
    if (!stop) {
      ctx.respond(404, "{\"error_msg\":\"404 Route Not Found\"}\n");
      stop = true;
    }
  }
  if (!stop && route->service_missing) {
    // APISIX (init.lua) checks the service before any of the route's plugins
    // run and exits with a bare 404, which nginx renders as its error page.
    // The missing service was logged once when the snapshot was compiled.
    ctx.respond(404, error_page(404), "text/html");
    stop = true;
  }
  if (!stop && !route->chain.empty()) {
    if (uint64_t cap = body_wanted(route->chain, ctx); cap && !co_await read_body_for_router(ctx, cap)) co_return false;
    stop = co_await run_phase(route->chain, Phase::rewrite, ctx);
  }
  chain_ = route ? &route->chain : nullptr;
  if (!stop && ctx.consumer && ctx.consumer->group_missing) {
    // APISIX (init.lua) exits with a bare 503 once it cannot fetch the
    // authenticated consumer's group; logged when the snapshot was compiled.
    ctx.respond(503, error_page(503), "text/html");
    stop = true;
  }
  if (!stop && ctx.consumer && !ctx.consumer->chain.empty()) {
    // Consumer plugins override the route's plugins of the same name, for
    // every later phase of this request.
    merged_.entries.clear();
    for (const auto& e : route->chain.entries) {
      bool overridden = false;
      for (const auto& c : ctx.consumer->chain.entries)
        if (std::string_view(c.def->name) == e.def->name) overridden = true;
      if (!overridden) merged_.entries.push_back(e);
    }
    for (const auto& c : ctx.consumer->chain.entries) merged_.entries.push_back(c);
    std::stable_sort(merged_.entries.begin(), merged_.entries.end(),
                     [](const plugins::Entry& a, const plugins::Entry& b) { return a.priority > b.priority; });
    stop = co_await run_phase(ctx.consumer->chain, Phase::rewrite, ctx);
    chain_ = &merged_;
  }
  if (!stop && !snap->global.empty()) stop = co_await run_phase(snap->global, Phase::access, ctx);
  if (!stop && !chain_->empty()) stop = co_await run_phase(*chain_, Phase::access, ctx);
  if (!stop && ctx.upstream_override) {
    // traffic-split's upstream, checked as a route's own is when compiled.
    const snapshot::CompiledUpstream& up = *ctx.upstream_override;
    const char* why = up.conf->nodes.empty() ? "no valid upstream node" : !up.tls_error.empty() ? "upstream TLS is not usable" : nullptr;
    if (why) {
      ctx.respond(up.conf->nodes.empty() ? 503 : 502, fmt::format("{{\"error_msg\":\"{}\"}}\n", why));
      stop = true;
    }
  } else if (!stop && (!route->upstream || route->upstream_error)) {
    int status = route->upstream_error ? route->upstream_error : 503;
    ctx.respond(status, fmt::format("{{\"error_msg\":\"{}\"}}\n", log::json_escape(route->upstream_error_msg)));
    stop = true;
  }
  bool keep;
  if (stop) keep = co_await send_plugin_response(ctx, route);
  else keep = co_await proxy(ctx, *route);
  if (duplex_) keep = co_await end_duplex() && keep;
  // Step over this request; a streamed body already advanced the buffer.
  if (keep && !streamed_) in_.begin += req_.head_bytes + buffered_body_bytes();
  co_return keep;
}

// The Host header sent upstream (and so an https upstream's SNI, as
// APISIX's proxy_ssl_name $upstream_host). `by` names who set it, for errors.
std::string Connection::upstream_host_value(const plugins::RequestCtx& ctx, const snapshot::CompiledUpstream& up,
                                            const model::UpstreamNode& node, const char** by) const {
  if (ctx.upstream_host) {
    *by = ctx.upstream_host_by;
    return *ctx.upstream_host;
  }
  if (up.conf->pass_host == "node") {
    bool v6 = node.host.find(':') != std::string::npos;
    std::string host = v6 ? "[" + node.host + "]" : node.host;
    // As APISIX's balancer: the port is left out only when it is the
    // default port of the upstream's scheme.
    const std::string& scheme = up.conf->scheme;
    const int default_port = scheme == "https" || scheme == "grpcs" ? 443 : scheme == "http" || scheme == "grpc" ? 80 : 0;
    if (node.port != default_port) host += ":" + std::to_string(node.port);
    return host;
  }
  if (up.conf->pass_host == "rewrite") {
    *by = "the upstream's upstream_host";
    return up.conf->upstream_host;
  }
  return std::string(req_.host);
}

std::string Connection::upstream_head(const plugins::RequestCtx& ctx, const snapshot::CompiledUpstream& up,
                                      const model::UpstreamNode& node, bool websocket) {
  std::string out;
  out.reserve(512 + req_.headers.size() * 48);
  // Every field is checked as it is written (HeadWriter); plugin edits name
  // their plugin for the log line.
  HeadWriter hw(out, "the client's request");
  std::string absolute_path;
  std::string_view target = req_.target;
  if (ctx.upstream_target) target = *ctx.upstream_target;
  else if (!req_.target.empty() && req_.target[0] != '/') {
    absolute_path.append(req_.path);
    if (!req_.query.empty()) { absolute_path += '?'; absolute_path.append(req_.query); }
    target = absolute_path;
  }
  // An HTTP/1.0 client cannot take a chunked response: ask the upstream in
  // 1.0 too (no chunking, connection closed after the response), as nginx does.
  const bool http10 = req_.minor == 0 && !websocket;
  hw.request_line(ctx.upstream_method ? std::string_view(*ctx.upstream_method) : req_.method, target, http10,
                  ctx.upstream_method ? ctx.upstream_method_by : nullptr,
                  ctx.upstream_target ? ctx.upstream_target_by : nullptr);

  const char* host_by = nullptr;
  const std::string host = upstream_host_value(ctx, up, node, &host_by);
  hw.header("Host", host, host_by);

  // X-Forwarded-For: the client's chain (every line, as nginx's
  // $proxy_add_x_forwarded_for) plus the client address; with
  // apisix.trusted_addresses set, an untrusted peer's chain is dropped (APISIX).
  // The chain is the request's after plugin edits: a plugin's set or remove
  // replaces the client's, its adds follow (nginx reads the edited headers_in).
  auto edited = [&](std::string_view n) { return in_list(ctx.req_remove, n) || in_pairs(ctx.req_set, n); };
  std::string xff;
  const bool keep_xff = !ctx.xff_dropped && !edited("x-forwarded-for");
  for (const auto& h : req_.headers) {
    std::string_view n = h.name;
    if (is_hop_by_hop(n) || iequals(n, "host") || iequals(n, "content-length") || iequals(n, "expect") ||
        iequals(n, "x-real-ip") || iequals(n, "x-forwarded-proto") || iequals(n, "x-forwarded-host") ||
        iequals(n, "x-forwarded-port"))
      continue;
    if (iequals(n, "x-forwarded-for")) {
      if (keep_xff) { xff.append(h.value); xff.append(", "); }
      continue;
    }
    // APISIX clears Forwarded, and puts back a trusted peer's.
    if (!ctx.forwarded_trusted && iequals(n, "forwarded")) continue;
    if (listed_in_connection(req_.headers, n)) continue;
    if (in_list(ctx.req_remove, n) || in_pairs(ctx.req_set, n)) continue;
    hw.header(n, h.value);
  }
  // X-Forwarded-Proto/Host/Port are this hop's (the Host as sent, case and
  // port kept; its port, else the listener's), unless a trusted peer sent
  // its own (RequestCtx::forwarded). APISIX puts them in the request before
  // any plugin runs and forwards the request as plugins leave it: a plugin's
  // set replaces them, its remove drops them, its add follows them.
  std::string port_text;
  if (!edited("x-forwarded-proto")) hw.header("X-Forwarded-Proto", ctx.forwarded('p', port_text));
  if (!edited("x-forwarded-host")) hw.header("X-Forwarded-Host", ctx.forwarded('h', port_text));
  if (!edited("x-forwarded-port")) hw.header("X-Forwarded-Port", ctx.forwarded('P', port_text));
  // APISIX's proxy_set_header for X-Real-IP and X-Forwarded-For replaces any
  // request header of those names, a plugin's too (its X-Forwarded-For joins
  // the chain instead).
  for (const auto* edits : {&ctx.req_set, &ctx.req_add})
    for (const auto& e : *edits) {
      if (iequals(e.name, "x-real-ip")) continue;
      if (iequals(e.name, "x-forwarded-for")) { xff.append(e.value); xff.append(", "); continue; }
      hw.header(e.name, e.value, e.plugin);
    }
  hw.header("X-Real-IP", ctx.remote_addr);
  if (xff.empty()) hw.header("X-Forwarded-For", ctx.remote_addr);
  else hw.header("X-Forwarded-For", xff.append(ctx.remote_addr));
  if (req_.body == BodyKind::chunked) hw.header("Transfer-Encoding", "chunked");
  else if (req_.body == BodyKind::length) hw.header("Content-Length", std::to_string(req_.content_length));
  if (http10) hw.header("Connection", "close");
  if (websocket) {
    hw.header("Connection", "upgrade");
    hw.header("Upgrade", req_.header("upgrade"));
  }
  hw.end();
  if (!hw.ok()) {
    log::error("route {}: refused to send the request to upstream {}: {}; answering 500",
               ctx.route_id.empty() ? std::string_view("-") : ctx.route_id, up.key, hw.fault());
    out.clear();
  }
  return out;
}

struct RelayResult {
  bool ok = false;
  bool src_failed = false;   // read error / EOF before the end
  bool src_timeout = false;
  bool dst_failed = false;
  bool bad_framing = false;
  bool too_large = false;
  bool nothing_written = false;  // the first write failed before dst accepted a byte
  bool tee_overflow = false;     // the body outgrew the copy's bound (the copy is cut, or dropped if `whole`)
  uint64_t bytes = 0;
};

// A copy of a body taken while relay() streams it: the raw bytes (chunk
// framing and all: proxy-mirror resends them as they came) or the payload
// (a logger's include_resp_body), at most `max` bytes. `whole`: a body
// larger than that leaves no copy at all (the mirror wants all or nothing);
// otherwise its first `max` bytes stay.
struct BodyCopy {
  std::string* to = nullptr;
  size_t max = 0;
  bool payload = false;
  bool whole = false;
};

// Streams one message body from `src` to `dst`, writing `prefix` (a message
// head) together with the first body bytes. Memory stays bounded by the
// source buffer: nothing is accumulated. With `dechunk`, a chunked body is
// sent as its decoded payload (to an HTTP/1.0 client, close-delimited).
// With `copy`, the body is also copied while it streams (BodyCopy).
awaitable<RelayResult> relay(Stream& src, Timed& st, Buf& sb, BodyKind kind, uint64_t length,
                             Stream& dst, Timed& dt, std::string_view prefix, double read_timeout,
                             double write_timeout, uint64_t max_bytes, bool dechunk = false, BodyCopy copy = {}) {
  RelayResult res;
  ChunkedValidator v;
  uint64_t remaining = length;
  bool need_prefix = !prefix.empty();
  bool first_write = true;
  std::string payload;  // decoded chunk data (dechunk only)
  for (;;) {
    size_t take = 0;
    bool done = false;
    std::string_view avail(sb.data.data() + sb.begin, sb.avail());
    switch (kind) {
      case BodyKind::none: done = true; break;
      case BodyKind::length:
        take = static_cast<size_t>(std::min<uint64_t>(avail.size(), remaining));
        remaining -= take;
        done = remaining == 0;
        break;
      case BodyKind::chunked: {
        payload.clear();
        auto r = v.feed(avail, take, dechunk || (copy.to && copy.payload && !res.tee_overflow) ? &payload : nullptr);
        if (r == ChunkedValidator::Result::error) { res.bad_framing = true; co_return res; }
        done = r == ChunkedValidator::Result::done;
        break;
      }
      case BodyKind::until_close: take = avail.size(); break;
    }
    const bool decoded = dechunk && kind == BodyKind::chunked;
    const size_t out_len = decoded ? payload.size() : take;
    if (copy.to && !res.tee_overflow) {
      std::string_view got =
          copy.payload && kind == BodyKind::chunked ? std::string_view(payload) : avail.substr(0, take);
      if (copy.to->size() + got.size() <= copy.max) {
        copy.to->append(got);
      } else if (copy.whole) {
        res.tee_overflow = true;
        std::string().swap(*copy.to);
      } else {
        res.tee_overflow = true;
        copy.to->append(got.substr(0, copy.max - copy.to->size()));
      }
    }
    res.bytes += out_len;  // what dst gets: without the chunk framing when de-chunked (the access log)
    if (max_bytes && (kind == BodyKind::chunked ? v.payload_bytes() : res.bytes) > max_bytes) {
      res.too_large = true;
      co_return res;
    }
    if (need_prefix || out_len > 0) {
      std::array<asio::const_buffer, 2> bufs{
          asio::buffer(prefix.data(), need_prefix ? prefix.size() : 0),
          decoded ? asio::buffer(payload) : asio::buffer(sb.data.data() + sb.begin, take)};
      bool to = false;
      size_t written = 0;
      if (!co_await write_all(dst, dt, bufs, write_timeout, to, &written)) {
        res.dst_failed = true;
        res.nothing_written = first_write && written == 0 && !to;
        co_return res;
      }
      need_prefix = false;
      first_write = false;
    }
    sb.begin += take;
    if (done) { res.ok = true; co_return res; }
    if (sb.begin == sb.end) sb.begin = sb.end = 0;
    else sb.compact();
    error_code ec;
    bool to = false;
    size_t n = co_await read_some(src, st, sb, read_timeout, ec, to);
    if (ec || n == 0) {
      if (kind == BodyKind::until_close && (ec == asio::error::eof || (!ec && n == 0))) { res.ok = true; co_return res; }
      res.src_failed = true;
      res.src_timeout = to;
      co_return res;
    }
  }
}

// Bidirectional copy after a 101 Switching Protocols (WebSocket). Both
// directions share one idle deadline, renewed by traffic either way (as
// nginx renews its timers on every event of an upgraded connection).
struct TunnelSide {
  Stream& stream;
  Timed& timed;
};

awaitable<void> pump(TunnelSide from, TunnelSide to, Buf& b, int64_t idle_ms) {
  auto renew = [&] { from.timed.deadline = to.timed.deadline = now_ms() + idle_ms; };
  for (;;) {
    if (b.avail()) {
      auto [e, n] = co_await transport::write(to.stream, asio::buffer(b.data.data() + b.begin, b.avail()));
      if (e) break;
      b.begin = b.end = 0;
      renew();
    }
    auto [e, n] = co_await transport::read_some(from.stream, asio::buffer(b.data));
    if (e || n == 0) break;
    b.begin = 0;
    b.end = n;
    renew();
  }
}

awaitable<bool> Connection::tunnel(UpstreamConn& up, double idle_timeout) {
  // Bytes after the handshake head (early frames) are forwarded first.
  // The pumps reuse in_, where the request head lives: keep a copy for the log.
  if (!streamed_) {
    head_copy_.assign(in_.data.data() + in_.begin, req_.head_bytes);
    ParseError perr;
    parse_request(head_copy_, w_.cfg().limits, req_, perr);
    in_.begin += req_.head_bytes;
    streamed_ = true;
  }
  const int64_t idle_ms = std::max<int64_t>(ms(idle_timeout), 1000);
  timed_.fired = up.timed.fired = false;
  timed_.deadline = up.timed.deadline = now_ms() + idle_ms;
  timed_.tunnel = true;  // a drain ends tunnels
  auto ex = co_await asio::this_coro::executor;
  auto done = std::make_shared<int>(0);
  asio::steady_timer wait(ex, std::chrono::steady_clock::time_point::max());
  // The tunnel ends when either side ends (FIN, reset, idle deadline): the
  // other side is closed at once rather than left half-open, as nginx does.
  auto finish = [&, done](std::exception_ptr) {
    s_.close();
    up.stream->close();
    if (++*done == 2) wait.cancel();
  };
  asio::co_spawn(ex, pump({s_, timed_}, {*up.stream, up.timed}, in_, idle_ms), finish);
  asio::co_spawn(ex, pump({*up.stream, up.timed}, {s_, timed_}, up.buf, idle_ms), finish);
  co_await wait.async_wait(tok);
  timed_.tunnel = false;
  timed_.deadline = up.timed.deadline = 0;
  co_return false;
}

// The request body of a call to an HTTP/2 upstream, relayed while the
// response streams back. A client that fails or sends bad framing resets
// the upstream stream, which ends the response side too.
awaitable<void> Connection::duplex_body(Duplex* d, double send_timeout) {
  const NodeConfig& cfg = w_.cfg();
  RelayResult rr = co_await relay(s_, d->src, in_, req_.body, req_.content_length, *d->up, d->dst, {},
                                  cfg.client_body_timeout, send_timeout, cfg.limits.max_body_bytes);
  d->ok = rr.ok;
  if (!rr.ok) d->up->close();
}

// After the response: a request body still streaming is abandoned (its
// stream reset, the client connection closed: its body was not read to the
// end).
awaitable<bool> Connection::end_duplex() {
  Duplex& d = *duplex_;
  if (!d.finished) {
    d.up->close();
    s_.cancel();
    while (!d.finished) co_await d.done.async_wait(tok);
  }
  const bool ok = d.ok;
  w_.unwatch(&d.src);
  w_.unwatch(&d.dst);
  duplex_.reset();
  co_return ok;
}

// The route's timeout, else its upstream's (APISIX's balancer): with
// traffic-split, the upstream it chose.
const model::Timeout& request_timeout(const plugins::RequestCtx& ctx, const snapshot::CompiledRoute& route) {
  static const model::Timeout kDefault{};
  if (!ctx.upstream_override || route.conf->timeout) return route.timeout;
  const auto& t = ctx.upstream_override->conf->timeout;
  return t ? *t : kDefault;
}

std::string chash_key(const plugins::RequestCtx& ctx, const model::Upstream& u) {
  std::optional<std::string> k;
  if (u.hash_on == "vars") k = ctx.var(u.key);
  else if (u.hash_on == "header") k = ctx.var("http_" + u.key);
  else if (u.hash_on == "cookie") k = ctx.var("cookie_" + u.key);
  else if (u.hash_on == "consumer") k = ctx.var("consumer_name");
  else if (u.hash_on == "vars_combinations") k = router::expand_vars(u.key, ctx);
  if (!k || k->empty()) return ctx.remote_addr;
  return *k;
}

awaitable<bool> Connection::proxy(plugins::RequestCtx& ctx, const snapshot::CompiledRoute& route) {
  const NodeConfig& cfg = w_.cfg();
  snapshot::CompiledUpstream& up = ctx.upstream_override ? *ctx.upstream_override : *route.upstream;
  upstream::Balancer& bal = *up.balancer;
  const model::Upstream& uc = *up.conf;
  const model::Timeout& to = request_timeout(ctx, route);
  const bool idempotent = req_.method == "GET" || req_.method == "HEAD" || req_.method == "OPTIONS" ||
                          req_.method == "PUT" || req_.method == "DELETE" || req_.method == "TRACE";
  const bool websocket = route.websocket && req_.upgrade_websocket;
  // HTTP/2 to the upstream (upstream_h2.h); never a WebSocket.
  const bool grpc_up = (uc.scheme == "grpc" || uc.scheme == "grpcs") && !websocket;
  const size_t body_in_buf = in_.avail() - req_.head_bytes;
  bool body_buffered = req_.body == BodyKind::none ||
                       (req_.body == BodyKind::length && body_in_buf >= req_.content_length);
  if (req_.body == BodyKind::chunked) {
    ChunkedValidator v;
    size_t used = 0;
    body_buffered = v.feed(std::string_view(in_.data.data() + in_.begin + req_.head_bytes, body_in_buf), used) ==
                    ChunkedValidator::Result::done;
  }
  // proxy-mirror's copy: a body already here goes with it now; one that
  // streams is teed into a bounded buffer and sent when it has passed.
  std::shared_ptr<plugins::SideRequest> mirror = std::move(mirror_);
  mirror_.reset();
  // A body streaming to an HTTP/2 upstream is not teed (not done).
  if (grpc_up && !body_buffered) mirror.reset();
  std::string mirror_body;
  if (mirror) {
    // The request's headers as the plugins left them, as nginx's mirror
    // copies the edited request: what hide_credentials removed stays removed.
    for (const auto& h : req_.headers)
      if (!in_list(ctx.req_remove, h.name) && !in_pairs(ctx.req_set, h.name))
        mirror->headers.emplace_back(std::string(h.name), std::string(h.value));
    for (const auto* edits : {&ctx.req_set, &ctx.req_add})
      for (const auto& e : *edits) mirror->headers.emplace_back(e.name, e.value);
    const bool chunked = req_.body == BodyKind::chunked;
    if (req_.body == BodyKind::length && req_.content_length > mirror->client_body_max) {
      count_mirror_body_too_large();
      mirror.reset();
    } else if (body_buffered) {
      const size_t blen = buffered_body_bytes();
      if (blen > mirror->client_body_max) {
        count_mirror_body_too_large();
      } else {
        mirror->body.assign(in_.data.data() + in_.begin + req_.head_bytes, blen);
        mirror->body_chunked = chunked;
        side_launch(w_, std::move(mirror));
      }
      mirror.reset();
    } else {
      mirror->body_chunked = chunked;
    }
  }
  if (!body_buffered) {
    // The body will stream through in_: keep the head alive in a copy.
    head_copy_.assign(in_.data.data() + in_.begin, req_.head_bytes);
    ParseError perr;
    parse_request(head_copy_, cfg.limits, req_, perr);
    in_.begin += req_.head_bytes;
    streamed_ = true;
  }
  const std::string hash_key = uc.type == "chash" ? chash_key(ctx, uc) : std::string();
  int retries = uc.retries < 0 ? static_cast<int>(uc.nodes.size()) - 1 : uc.retries;
  const int64_t retry_deadline = uc.retry_timeout > 0 ? now_ms() + ms(uc.retry_timeout) : 0;
  std::vector<int> tried;
  int fail_status = 502;
  std::unique_ptr<UpstreamConn> conn;
  std::string tls_key;  // the pool key of an https node (see below)
  int node_idx = -1;
  ResponseHead resp;
  bool sent_body = false;
  const auto upstream_start = std::chrono::steady_clock::now();
  auto passive = [&](int node, bool tcp_fail, bool timeout, int status) {
    if (!uc.checks || !uc.checks->passive || node < 0) return;
    const auto& hc = *uc.checks;
    upstream::NodeHealth& h = bal.health(node);
    auto in = [](const std::vector<int>& v, int s) { return std::find(v.begin(), v.end(), s) != v.end(); };
    bool bad = false;
    if (tcp_fail) bad = ++h.tcp_failures >= hc.passive_tcp_failures && hc.passive_tcp_failures > 0;
    else if (timeout) bad = ++h.timeouts >= hc.passive_timeouts && hc.passive_timeouts > 0;
    else if (in(hc.passive_unhealthy_statuses, status)) bad = ++h.http_failures >= hc.passive_http_failures && hc.passive_http_failures > 0;
    else if (in(hc.passive_healthy_statuses, status)) {
      h.tcp_failures = h.timeouts = h.http_failures = 0;
      if (!h.healthy && ++h.successes >= hc.passive_successes) { h.healthy = true; h.successes = 0; }
    }
    if (bad && h.healthy.exchange(false)) {
      log::warn("upstream {} node {}:{} marked unhealthy (passive)", up.key, uc.nodes[node].host, uc.nodes[node].port);
    }
  };

  // A client that abandons the request (an HTTP/2 stream reset) ends the
  // wait on the upstream at once: the hook cancels the upstream's pending
  // operations, and the failure that follows is told apart from the
  // upstream's by !s_.is_open(). The upstream request is then dropped: its
  // connection closed (its response state is unknown, so never pooled; an
  // HTTP/2 upstream stream is reset), no node failure, no retry, and the
  // access log says 499 as nginx's does.
  s_.on_abandon([&conn] {
    if (conn) conn->stream->cancel();
  });
  struct ClearHook {
    Stream& s;
    ~ClearHook() { s.on_abandon(nullptr); }
  } clear_hook{s_};
  auto abandon = [&] {
    if (conn) {
      conn->stream->close();
      w_.unwatch(&conn->timed);
      conn.reset();
    }
    run_log(ctx, &route, 499, 0);
  };

  for (int attempt = 0;; ++attempt) {
    if (attempt > retries || (retry_deadline && now_ms() > retry_deadline) || sent_body) break;
    node_idx = bal.pick(w_.id(), hash_key, tried);
    if (node_idx < 0) break;
    tried.push_back(node_idx);
    const model::UpstreamNode& node = uc.nodes[node_idx];
    // https: the pool key adds the SNI and the TLS identity (verification,
    // CA, client certificate), so a connection made for one upstream Host
    // or one client certificate never serves another.
    std::string sni;
    if (up.tls) {
      const char* by = nullptr;
      sni = tls::sni_for_host(upstream_host_value(ctx, up, node, &by));
      tls_key = fmt::format("https|{}|{}|{}", up.node_keys[node_idx], sni, up.tls->identity);
    }
    const std::string& pool_key = up.tls ? tls_key : up.node_keys[node_idx];
    std::string head = upstream_head(ctx, up, node, websocket);
    if (head.empty()) { fail_status = 500; break; }  // refused by the head writer (logged): no retry helps

    // A pooled connection may have been closed by the origin after the idle
    // check (take_pooled) let it through. Retry once, on a fresh connection
    // to the same node, without using up `retries` and without counting a
    // node failure, when that cannot make the origin execute the request
    // twice (as Go's transport): idempotent requests whose body we still
    // hold, when no response byte came back; any request when its first
    // write was refused before a byte was accepted.
    bool sent_continue = continue_sent_;
    for (int fresh = 0; fresh < 2; ++fresh) {
      conn = fresh == 0 && !grpc_up ? w_.take_pooled(pool_key) : nullptr;
      bool reused = conn != nullptr;
      if (grpc_up) {
        if (!up.endpoints[node_idx]) {
          log::warn("upstream {}: node {} has no address yet (not resolved)", up.key, node.host);
          break;
        }
        H2Target t;
        t.key = pool_key;
        t.endpoint = *up.endpoints[node_idx];
        t.tls = up.tls.get();
        t.sni = sni;
        t.host = node.host;
        t.connect_timeout = to.connect;
        t.send_timeout = to.send;
        t.max_streams = uc.keepalive_requests;
        t.idle_ms = ms(uc.keepalive_idle);
        t.upstream = up.key;
        t.node = node.host;
        t.port = node.port;
        // The client's grpc-timeout (as it sent it: a plugin removing the
        // field upstream does not lift it), bounded by the read timeout.
        int64_t call_ms = -1;
        if (auto gt = req_.header("grpc-timeout"); !gt.empty())
          if (auto v = parse_grpc_timeout(gt)) call_ms = std::min(*v, ms(to.read));
        H2Pool::Opened opened = co_await w_.h2_pool().open(t, call_ms);
        if (!opened.stream) {
          fail_status = opened.fail_status;
          passive(node_idx, !opened.timed_out, opened.timed_out, 0);
          break;
        }
        conn = std::make_unique<UpstreamConn>(w_.io());
        conn->buf.data.resize(kBufSize);
        conn->h2 = std::move(opened.stream);
        conn->stream = conn->h2.get();
        conn->timed.stream = conn->stream;
        w_.watch(&conn->timed);
        reused = opened.reused;
      } else if (!conn) {
        conn = std::make_unique<UpstreamConn>(w_.io());
        conn->buf.data.resize(kBufSize);
        conn->timed.stream = conn->stream;
        // Addresses come resolved with the snapshot: a worker never waits
        // for DNS. A name the resolver has not answered yet is unusable.
        if (!up.endpoints[node_idx]) {
          log::warn("upstream {}: node {} has no address yet (not resolved)", up.key, node.host);
          conn.reset();
          break;
        }
        const tcp::endpoint ep = *up.endpoints[node_idx];
        w_.watch(&conn->timed);
        conn->timed.deadline = now_ms() + ms(to.connect);
        conn->timed.fired = false;
        auto [cec] = co_await conn->tcp.socket().async_connect(ep, tok);
        if (cec || !up.tls) conn->timed.deadline = 0;
        if (cec && !s_.is_open()) {
          abandon();
          co_return false;
        }
        if (cec) {
          bool timed_out = conn->timed.fired;
          log::warn("upstream {}: connect to {}:{} failed: {}", up.key, node.host, node.port,
                    timed_out ? "timed out" : cec.message());
          fail_status = timed_out ? 504 : 502;
          passive(node_idx, !timed_out, timed_out, 0);
          w_.unwatch(&conn->timed);
          conn.reset();
          break;
        }
        conn->tcp.socket().set_option(tcp::no_delay(true), cec);
        if (up.tls) {
          // The handshake runs under the connect deadline set above.
          conn->tls = std::make_unique<TlsStream>(std::move(conn->tcp.socket()), up.tls->ctx);
          conn->stream = conn->tls.get();
          conn->timed.stream = conn->stream;
          SSL* ssl = conn->tls->native();
          error_code hec = asio::error::no_memory;
          if (tls::prepare_client(ssl, *up.tls, sni, node.host)) {
            if (SSL_SESSION* sess = w_.tls_session(pool_key)) SSL_set_session(ssl, sess);
            hec = co_await conn->tls->handshake(asio::ssl::stream_base::client);
          }
          conn->timed.deadline = 0;
          if (hec && !s_.is_open()) {
            abandon();
            co_return false;
          }
          if (hec) {
            bool timed_out = conn->timed.fired;
            const long vr = SSL_get_verify_result(ssl);
            std::string why = timed_out ? "timed out" : hec.message();
            if (vr != X509_V_OK) why = fmt::format("certificate verify failed: {}", X509_verify_cert_error_string(vr));
            log::warn("upstream {}: TLS handshake with {}:{} failed: {}", up.key, node.host, node.port, why);
            fail_status = timed_out ? 504 : 502;
            passive(node_idx, !timed_out, timed_out, 0);
            w_.unwatch(&conn->timed);
            conn.reset();
            break;
          }
        }
      }
      conn->idle_timeout_ms = ms(uc.keepalive_idle);
      if (!s_.is_open()) {  // left while we connected
        abandon();
        co_return false;
      }
      // Send the head with whatever body bytes are buffered.
      bool ok;
      bool io_timeout = false;
      bool refused = false;  // the first write failed before the origin accepted a byte
      if (body_buffered) {
        // Exactly this request's body: bytes after it belong to the next request.
        size_t blen = buffered_body_bytes();
        std::array<asio::const_buffer, 2> bufs{asio::buffer(head),
                                               asio::buffer(in_.data.data() + in_.begin + req_.head_bytes, blen)};
        size_t written = 0;
        ok = co_await write_all(*conn->stream, conn->timed, bufs, to.send, io_timeout, &written);
        refused = !ok && !io_timeout && written == 0;
      } else if (conn->h2) {
        // The head goes now; the body streams beside the response.
        sent_body = true;
        ok = co_await write_all(*conn->stream, conn->timed, asio::buffer(head), to.send, io_timeout);
        if (ok) {
          duplex_ = std::make_unique<Duplex>(w_.io());
          Duplex* d = duplex_.get();
          d->up = conn->h2;
          d->src.stream = &s_;
          d->dst.stream = d->up.get();
          w_.watch(&d->src);
          w_.watch(&d->dst);
          asio::co_spawn(w_.io(), duplex_body(d, to.send), [d](std::exception_ptr) {
            d->finished = true;
            d->done.cancel();
          });
        }
      } else {
        if (req_.expect_continue && req_.minor == 1 && !sent_continue) {
          static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
          bool t2 = false;
          co_await write_all(s_, timed_, asio::buffer(k100), cfg.send_timeout, t2);
          sent_continue = true;
        }
        sent_body = true;  // from here on the body cannot be replayed
        auto rr = co_await relay(s_, timed_, in_, req_.body, req_.content_length, *conn->stream, conn->timed, head,
                                 cfg.client_body_timeout, to.send, cfg.limits.max_body_bytes, false,
                                 BodyCopy{.to = mirror ? &mirror_body : nullptr,
                                          .max = mirror ? mirror->client_body_max : 0,
                                          .whole = true});
        if (mirror && rr.ok) {
          if (rr.tee_overflow) {
            count_mirror_body_too_large();
          } else {
            mirror->body = std::move(mirror_body);
            side_launch(w_, std::move(mirror));
          }
          mirror.reset();
        }
        if (rr.src_failed && !s_.is_open()) {  // reset while its body streamed upstream
          abandon();
          co_return false;
        }
        if (rr.bad_framing || rr.too_large || rr.src_failed) {
          w_.unwatch(&conn->timed);
          conn.reset();
          if (rr.bad_framing) co_await send_simple(400, "", false, {}, "");
          else if (rr.too_large) co_await send_simple(413, "", false, {}, "");
          co_return false;
        }
        if (rr.nothing_written) {
          // Nothing left the client's buffer: the body can still be sent.
          refused = true;
          sent_body = false;
        }
        body_consumed_ = rr.ok;
        ok = rr.ok;
      }
      // Read the response head (skipping interim 1xx except 101). One
      // deadline covers the whole head, so an origin that keeps sending 1xx
      // responses cannot hold the request forever.
      bool got_bytes = false;
      bool peer_refused = false;  // an HTTP/2 origin refused the stream unprocessed
      if (ok) {
        const int64_t head_deadline = now_ms() + ms(to.read);
        for (;;) {
          ParseError perr;
          ParseStatus st = ParseStatus::incomplete;
          if (conn->buf.avail())
            st = parse_response(std::string_view(conn->buf.data.data() + conn->buf.begin, conn->buf.avail()),
                                req_.method, resp, perr);
          if (st == ParseStatus::complete) {
            if (resp.status >= 100 && resp.status < 200 && resp.status != 101) {
              conn->buf.begin += resp.head_bytes;
              got_bytes = true;
              continue;
            }
            break;
          }
          if (st == ParseStatus::error) {
            log::warn("upstream {}: invalid response from {}:{}: {}", up.key, node.host, node.port, perr.reason);
            ok = false;
            fail_status = 502;
            got_bytes = true;
            break;
          }
          conn->buf.compact();
          if (conn->buf.end == conn->buf.data.size()) {
            if (conn->buf.data.size() >= 64 * 1024) { ok = false; fail_status = 502; got_bytes = true; break; }
            conn->buf.data.resize(conn->buf.data.size() * 2);
          }
          error_code ec;
          size_t n = co_await read_some_until(*conn->stream, conn->timed, conn->buf, head_deadline, ec, io_timeout);
          if (ec || n == 0) {
            ok = false;
            peer_refused = ec == asio::error::connection_refused;
            got_bytes = got_bytes || conn->buf.avail() > 0;
            fail_status = io_timeout ? 504 : 502;
            break;
          }
        }
      } else {
        fail_status = io_timeout ? 504 : 502;
      }
      if (ok) goto got_response;
      if (!s_.is_open()) {
        abandon();
        co_return false;
      }
      w_.unwatch(&conn->timed);
      conn.reset();
      const bool stale = reused && !io_timeout && !got_bytes && (refused || (idempotent && body_buffered));
      // An HTTP/2 origin that refused the stream (REFUSED_STREAM, a GOAWAY
      // below it) did not process the request (RFC 9113 §8.7): sent again
      // once, through the pool (a refusing connection, if still usable, or
      // a new one), when its whole body is still ours.
      if (peer_refused && !got_bytes && body_buffered && fresh == 0) {
        log::info("upstream {}: {}:{} refused the request unprocessed; sending it again", up.key, node.host,
                  node.port);
        continue;
      }
      if (stale && fresh == 0) {
        log::info("upstream {}: pooled connection to {}:{} was closed by the origin; retrying on a new one", up.key,
                  node.host, node.port);
        continue;
      }
      if (!got_bytes || fail_status == 504)
        log::warn("upstream {}: {} from {}:{}", up.key,
                  io_timeout ? "timed out" : "connection failed before a response", node.host, node.port);
      passive(node_idx, !io_timeout, io_timeout, 0);
      break;
    }
    if (!idempotent && sent_body) break;
    // Only requests whose body we still hold (or never had) are retried.
    if (!body_buffered) break;
    if (!idempotent && !tried.empty() && fail_status == 504) break;
  }
  {
    // No response: answer 502/503/504 as nginx/APISIX do.
    if (tried.empty()) fail_status = 502;
    ctx.upstream_status = fail_status;
    // As nginx's $upstream_addr, the node tried last, though it never
    // answered (access log, loggers, api-breaker's "the upstream failed").
    if (!tried.empty() && up.endpoints[tried.back()]) {
      ctx.balancer_ip = up.endpoints[tried.back()]->address().to_string();
      ctx.balancer_port = up.endpoints[tried.back()]->port();
    }
    ctx.respond(fail_status, error_page(fail_status), "text/html");
    if (!body_consumed_) {
      // We never read (all of) the request body: the connection cannot continue.
      req_.keep_alive = false;
    }
    { bool r = co_await send_plugin_response(ctx, &route); co_return r; }
  }

got_response : {
  if (resp.status == 101 && !websocket) {
    // A protocol switch nobody asked for (RFC 9110 §15.2.2): the connection
    // is in an unknown state, and the client cannot use a 101.
    log::warn("upstream {}: {}:{} answered 101 to a request that asked for no upgrade", up.key,
              uc.nodes[node_idx].host, uc.nodes[node_idx].port);
    w_.unwatch(&conn->timed);
    conn.reset();
    passive(node_idx, false, false, 502);
    ctx.upstream_status = 502;
    ctx.respond(502, error_page(502), "text/html");
    { bool r = co_await send_plugin_response(ctx, &route); co_return r; }
  }
  const size_t resp_head_at = conn->buf.begin;
  conn->buf.begin += resp.head_bytes;
  bal.on_start(w_.id(), node_idx);
  ctx.upstream_status = resp.status;
  ctx.upstream_resp = &resp;
  if (up.endpoints[node_idx]) {
    ctx.balancer_ip = up.endpoints[node_idx]->address().to_string();
    ctx.balancer_port = up.endpoints[node_idx]->port();
  }
  passive(node_idx, false, false, resp.status);
  run_header_filters(ctx, &route);
  bool body_collected = false;
  size_t body_limit = 0;
  if (!ctx.resp_body_override && resp.body != BodyKind::none && (body_limit = wants_body(ctx, route)) > 0) {
    // A body filter needs the whole body: read it (bounded), then filter.
    // Reading reuses the buffer the response head points into: keep a copy.
    resp_head_copy_.assign(conn->buf.data.data() + resp_head_at, resp.head_bytes);
    ParseError perr;
    parse_response(resp_head_copy_, req_.method, resp, perr);
    std::string body;
    bool at_end = false;
    bool complete = co_await collect_body(*conn, resp, to.read, body_limit, body, at_end);
    if (!complete) {
      log::warn("upstream {}: response body not usable for body filters (cut short)", up.key);
      ctx.upstream_resp = nullptr;
      w_.unwatch(&conn->timed);
      bal.on_finish(w_.id(), node_idx, 0);
      ctx.respond(502, "");
      { bool r = co_await send_plugin_response(ctx, &route); co_return r; }
    }
    run_body_filters(ctx, route, body);
    ctx.resp_body_override = std::move(body);
    body_collected = at_end;
  }
  const int status = ctx.resp_status_override.value_or(resp.status);
  const bool override_body = ctx.resp_body_override.has_value();
  bool keep_client = req_.keep_alive && !w_.draining();
  const bool switching = resp.status == 101 && websocket;
  if (!body_consumed_ && !body_buffered) keep_client = false;
  if (resp.body == BodyKind::until_close && !override_body) keep_client = false;
  if (resp.body == BodyKind::chunked && req_.minor == 0 && !override_body) keep_client = false;

  std::string head;
  HeadWriter hw(head, "the upstream's response");
  hw.status_line(status, status == resp.status && !resp.reason.empty() ? resp.reason : reason_phrase(status));
  for (const auto& h : resp.headers) {
    if (is_hop_by_hop(h.name) || iequals(h.name, "content-length")) continue;
    if (in_list(ctx.resp_remove, h.name) || in_pairs(ctx.resp_set, h.name)) continue;
    if (override_body && iequals(h.name, "content-encoding")) continue;
    hw.header(h.name, h.value);
  }
  for (const auto& e : ctx.resp_set) hw.header(e.name, e.value, e.plugin);
  for (const auto& e : ctx.resp_add) hw.header(e.name, e.value, e.plugin);
  if (switching) {
    hw.header("Connection", "upgrade");
    hw.header("Upgrade", resp.header("upgrade"));
  } else if (override_body && req_.minor == 1) {
    // As nginx sends a body a body filter replaced (APISIX's
    // clear_header_as_body_modified drops Content-Length): chunked.
    hw.header("Transfer-Encoding", "chunked");
  } else if (override_body) {
    hw.header("Content-Length", std::to_string(ctx.resp_body_override->size()));
  } else if (resp.body == BodyKind::length) {
    hw.header("Content-Length", std::to_string(resp.content_length));
  } else if (resp.body == BodyKind::chunked && req_.minor == 1) {
    hw.header("Transfer-Encoding", "chunked");
  } else if (resp.body == BodyKind::none && (status == 204 || status == 304 || req_.method == "HEAD")) {
    if (auto cl = resp.header("content-length"); !cl.empty()) hw.header("Content-Length", cl);
  } else if (resp.body == BodyKind::none) {
    hw.header("Content-Length", "0");
  }
  if (!switching) {
    if (!keep_client) hw.header("Connection", "close");
    else if (req_.minor == 0) hw.header("Connection", "keep-alive");
  }
  hw.end();
  head_bytes_sent_ = head.size();
  ctx.upstream_resp = nullptr;  // its views point into buffers about to be reused
  if (!hw.ok()) {
    // Nothing of this response has gone out: the upstream connection is in
    // an unknown state (its body unread), so it is closed, not pooled.
    log::error("route {}: refused to send the response of upstream {}: {}; answering 500", route.id, up.key, hw.fault());
    bal.on_finish(w_.id(), node_idx, 0);
    w_.unwatch(&conn->timed);
    conn.reset();
    const std::string page = error_page(500);
    co_await send_simple(500, page, false, {}, "text/html");
    run_log(ctx, &route, 500, 0);
    co_return false;
  }

  if (switching) {
    bool t = false;
    if (co_await write_all(s_, timed_, asio::buffer(head), cfg.send_timeout, t)) co_await tunnel(*conn, to.read);
    bal.on_finish(w_.id(), node_idx, 0);
    w_.unwatch(&conn->timed);
    run_log(ctx, &route, status, 0);
    co_return false;
  }

  RelayResult rr;
  bool upstream_reusable = false;
  // Hands the upstream connection back to the pool (or closes it) and feeds
  // the balancer; runs once per response (conn is empty afterwards).
  auto release_upstream = [&] {
    double latency = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - upstream_start).count();
    ctx.upstream_ms = latency;
    bal.on_finish(w_.id(), node_idx, latency);
    ++conn->requests;
    const std::string& key = up.tls ? tls_key : up.node_keys[node_idx];
    // Read after the response, when a TLS 1.3 session ticket has arrived.
    if (conn->tls) w_.keep_tls_session(key, SSL_get1_session(conn->tls->native()));
    if (upstream_reusable && !conn->h2 && conn->requests < uc.keepalive_requests && !w_.draining()) {
      conn->idle_since = now_ms();
      w_.give_back(key, std::move(conn), uc.keepalive_size);
    } else {
      w_.unwatch(&conn->timed);
      conn.reset();
    }
  };
  // A small body that is already complete in the upstream buffer travels in
  // the same buffer as the head, and the upstream connection goes back to the
  // pool before the client write: otherwise it stays busy while the client
  // reads, and c busy clients hold up to 2c upstream connections.
  constexpr uint64_t inline_body_max = 16 * 1024;
  const bool body_here = resp.body == BodyKind::none ||
                         (resp.body == BodyKind::length && resp.content_length <= inline_body_max &&
                          conn->buf.avail() >= resp.content_length);
  if (override_body) {
    bool t = false;
    std::string& b = *ctx.resp_body_override;
    rr.bytes = b.size();
    if (ctx.resp_body_keep) ctx.resp_body_seen.assign(b, 0, std::min(b.size(), ctx.resp_body_keep));
    if (req_.method == "HEAD") b.clear();
    else if (req_.minor == 1) {
      // One chunk and the last one (the body is ours to change now).
      if (!b.empty()) head += fmt::format("{:x}\r\n", b.size());
      b += b.empty() ? "0\r\n\r\n" : "\r\n0\r\n\r\n";
    }
    std::array<asio::const_buffer, 2> bufs{asio::buffer(head), asio::buffer(b)};
    rr.ok = co_await write_all(s_, timed_, bufs, cfg.send_timeout, t);
    rr.dst_failed = !rr.ok;
    // Reusable only when the upstream body was read to its end.
    upstream_reusable = body_collected && resp.keep_alive && resp.body != BodyKind::until_close && conn->buf.avail() == 0;
  } else if (body_here) {
    const auto n = resp.body == BodyKind::length ? static_cast<size_t>(resp.content_length) : size_t{0};
    if (ctx.resp_body_keep) ctx.resp_body_seen.assign(conn->buf.data.data() + conn->buf.begin, std::min(n, ctx.resp_body_keep));
    head.append(conn->buf.data.data() + conn->buf.begin, n);
    conn->buf.begin += n;
    upstream_reusable = resp.keep_alive && conn->buf.avail() == 0;
    release_upstream();
    bool t = false;
    rr.ok = co_await write_all(s_, timed_, asio::buffer(head), cfg.send_timeout, t);
    rr.dst_failed = !rr.ok;
    rr.bytes = n;
  } else {
    // An HTTP/1.0 client cannot read chunk framing: it gets the decoded
    // payload, delimited by the close.
    const bool dechunk = resp.body == BodyKind::chunked && req_.minor == 0;
    rr = co_await relay(*conn->stream, conn->timed, conn->buf, resp.body, resp.content_length, s_, timed_, head,
                        to.read, cfg.send_timeout, 0, dechunk,
                        BodyCopy{.to = ctx.resp_body_keep ? &ctx.resp_body_seen : nullptr,
                                 .max = ctx.resp_body_keep,
                                 .payload = true});
    upstream_reusable = rr.ok && resp.keep_alive && resp.body != BodyKind::until_close && conn->buf.avail() == 0;
  }
  if (conn) release_upstream();
  if ((rr.src_failed || rr.bad_framing) && s_.is_open()) {
    log::warn("upstream {}: response body from {}:{} ended early{}", up.key, uc.nodes[node_idx].host,
              uc.nodes[node_idx].port, rr.src_timeout ? " (read timeout)" : "");
    keep_client = false;
  }
  if (rr.dst_failed || rr.src_failed || rr.bad_framing) keep_client = false;
  run_log(ctx, &route, status, rr.bytes);
  co_return keep_client && (rr.ok);
}
}

}  // namespace

UpstreamConn::~UpstreamConn() = default;

tcp::socket& UpstreamConn::socket() { return tls ? tls->socket() : tcp.socket(); }

ConnInfo tcp_conn_info(tcp::socket& sock) {
  ConnInfo info;
  error_code ec;
  auto rep = sock.remote_endpoint(ec);
  if (!ec) {
    auto addr = rep.address();
    if (addr.is_v6() && addr.to_v6().is_v4_mapped()) addr = asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
    info.remote_ip = addr.to_string();
    info.remote_port = rep.port();
    if (auto a = router::IpAddr::parse(info.remote_ip)) info.remote_addr = *a;
  }
  auto lep = sock.local_endpoint(ec);
  if (!ec) info.local_port = lep.port();
  return info;
}

awaitable<void> serve(Worker& w, Stream& stream, const ConnInfo& info, std::string_view already) {
  Connection c(w, stream, info);
  c.preload(already);
  co_await c.run();
}

}  // namespace holdfast::proxy
