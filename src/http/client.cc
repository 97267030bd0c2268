#include "http/client.h"

#include <fmt/format.h>
#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "http/codec.h"
#include "http/proxy.h"

namespace holdfast::http {
namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

std::string Url::authority() const {
  bool v6 = host.find(':') != std::string::npos;
  std::string h = v6 ? "[" + host + "]" : host;
  bool default_port = (scheme == "https" && port == 443) || (scheme == "http" && port == 80);
  return default_port ? h : h + ":" + std::to_string(port);
}

Result<Url> Url::parse(std::string_view s) {
  Url u;
  auto sep = s.find("://");
  if (sep == std::string_view::npos) return Error{"invalid URL (expected http:// or https://): " + std::string(s)};
  u.scheme = std::string(s.substr(0, sep));
  for (auto& c : u.scheme) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  if (u.scheme != "http" && u.scheme != "https") return Error{"unsupported URL scheme: " + u.scheme};
  s.remove_prefix(sep + 3);
  auto slash = s.find('/');
  std::string_view auth = s.substr(0, slash);
  if (slash != std::string_view::npos) u.path = std::string(s.substr(slash));
  if (auto at = auth.rfind('@'); at != std::string_view::npos) auth.remove_prefix(at + 1);  // no userinfo
  u.port = u.tls() ? 443 : 80;
  if (!auth.empty() && auth[0] == '[') {
    auto close = auth.find(']');
    if (close == std::string_view::npos) return Error{"invalid URL host: " + std::string(auth)};
    u.host = std::string(auth.substr(1, close - 1));
    auth.remove_prefix(close + 1);
    if (!auth.empty() && auth[0] == ':') auth.remove_prefix(1);
    else auth = {};
  } else {
    auto colon = auth.find(':');
    u.host = std::string(auth.substr(0, colon));
    auth = colon == std::string_view::npos ? std::string_view{} : auth.substr(colon + 1);
  }
  if (!auth.empty()) {
    int p = 0;
    for (char c : auth) {
      if (c < '0' || c > '9') return Error{"invalid URL port: " + std::string(auth)};
      p = p * 10 + (c - '0');
      if (p > 65535) return Error{"invalid URL port: " + std::string(auth)};
    }
    if (p == 0) return Error{"invalid URL port: 0"};
    u.port = static_cast<uint16_t>(p);
  }
  if (u.host.empty()) return Error{"URL without a host"};
  return u;
}

std::string ClientResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return v;
  return {};
}

struct HttpClient::Conn {
  Conn(asio::any_io_executor ex, ssl::context& ctx, bool tls) : s(ex, ctx), timer(ex), tls(tls) {}
  ssl::stream<tcp::socket> s;
  asio::steady_timer timer;
  bool tls;
  bool timed_out = false;
  bool open = false;
  Buf buf;

  // The deadline closes the socket, which aborts whatever is pending.
  void arm(double seconds) {
    timed_out = false;
    timer.expires_after(std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
    timer.async_wait([this](error_code ec) {
      if (ec) return;
      timed_out = true;
      close();
    });
  }
  void disarm() { timer.cancel(); }
  void close() {
    error_code ec;
    s.lowest_layer().close(ec);
    open = false;
  }
  asio::awaitable<std::pair<error_code, size_t>> read_some() {
    if (buf.data.size() - buf.end < 4096) {
      buf.compact();
      if (buf.data.size() - buf.end < 4096) buf.data.resize(buf.data.size() * 2 + 16384);
    }
    auto b = asio::buffer(buf.data.data() + buf.end, buf.data.size() - buf.end);
    auto [ec, n] = tls ? co_await s.async_read_some(b, tok) : co_await s.next_layer().async_read_some(b, tok);
    if (!ec) buf.end += n;
    co_return std::make_pair(ec, n);
  }
  asio::awaitable<error_code> write(std::string_view data) {
    auto b = asio::buffer(data.data(), data.size());
    auto [ec, n] = tls ? co_await asio::async_write(s, b, tok) : co_await asio::async_write(s.next_layer(), b, tok);
    co_return ec;
  }
};

namespace {

std::string build_request(const Url& base, const std::string& method, const std::string& target, const Headers& headers,
                          const std::string& body) {
  std::string out = fmt::format("{} {} HTTP/1.1\r\nHost: {}\r\n", method, target.empty() ? "/" : target, base.authority());
  bool has_ct = false;
  for (const auto& [k, v] : headers) {
    if (iequals(k, "host")) continue;
    has_ct = has_ct || iequals(k, "content-type");
    out += k + ": " + v + "\r\n";
  }
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH")
    out += fmt::format("Content-Length: {}\r\n", body.size());
  out += "\r\n";
  out += body;
  return out;
}

}  // namespace

struct HttpClient::TlsCtx {
  explicit TlsCtx(const TlsOptions& o) : ctx(ssl::context::tls_client) {
    ctx.set_default_verify_paths();
    if (!o.ca_file.empty()) ctx.load_verify_file(o.ca_file);
    if (!o.cert_file.empty()) ctx.use_certificate_chain_file(o.cert_file);
    if (!o.key_file.empty()) ctx.use_private_key_file(o.key_file, ssl::context::pem);
    ctx.set_verify_mode(o.verify ? ssl::verify_peer : ssl::verify_none);
  }
  ssl::context ctx;
};

HttpClient::TlsCtx& HttpClient::tls_context() {
  if (!tls_ctx_) tls_ctx_ = std::make_unique<TlsCtx>(tls_);
  return *tls_ctx_;
}

HttpClient::HttpClient(asio::any_io_executor ex, Url base, TlsOptions tls)
    : ex_(std::move(ex)), base_(std::move(base)), tls_(std::move(tls)) {}

HttpClient::~HttpClient() {
  cancel();
  idle_.reset();
}

void HttpClient::cancel() {
  for (Conn* c : active_) c->close();
  if (idle_) idle_->close();
}

asio::awaitable<Status> HttpClient::connect(Conn& c, double timeout) {
  c.arm(timeout);
  tcp::resolver resolver(ex_);
  auto [rec, results] = co_await resolver.async_resolve(base_.host, std::to_string(base_.port), tok);
  if (rec) {
    c.disarm();
    co_return Error{fmt::format("cannot resolve {}: {}", base_.host, c.timed_out ? "timed out" : rec.message())};
  }
  auto [cec, ep] = co_await asio::async_connect(c.s.lowest_layer(), results, tok);
  if (cec) {
    c.disarm();
    co_return Error{fmt::format("cannot connect to {}: {}", base_.authority(), c.timed_out ? "timed out" : cec.message())};
  }
  error_code ignored;
  c.s.lowest_layer().set_option(tcp::no_delay(true), ignored);
  if (c.tls) {
    const std::string& name = tls_.sni.empty() ? base_.host : tls_.sni;
    if (!SSL_set_tlsext_host_name(c.s.native_handle(), name.c_str())) {
      c.disarm();
      co_return Error{"cannot set TLS SNI"};
    }
    if (tls_.verify) c.s.set_verify_callback(ssl::host_name_verification(name));
    auto [hec] = co_await c.s.async_handshake(ssl::stream_base::client, tok);
    if (hec) {
      c.disarm();
      co_return Error{fmt::format("TLS handshake with {} failed: {}", base_.authority(),
                                  c.timed_out ? "timed out" : hec.message())};
    }
  }
  c.disarm();
  c.open = true;
  co_return Status{};
}

asio::awaitable<Result<ClientResponse>> HttpClient::request(std::string method, std::string target, Headers headers,
                                                            std::string body, double timeout) {
  ssl::context& ctx = tls_context().ctx;
  const std::string wire = build_request(base_, method, target, headers, body);
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::unique_ptr<Conn> c = std::move(idle_);
    bool reused = c && c->open;
    if (!reused) {
      c = std::make_unique<Conn>(ex_, ctx, base_.tls());
      c->buf.data.resize(16384);
      auto st = co_await connect(*c, timeout);
      if (!st) co_return Error{st.error()};
    }
    active_.push_back(c.get());
    struct Untrack {
      std::vector<Conn*>& v;
      Conn* c;
      ~Untrack() { v.erase(std::remove(v.begin(), v.end(), c), v.end()); }
    } untrack{active_, c.get()};
    c->arm(timeout);
    c->buf.begin = c->buf.end = 0;
    if (auto ec = co_await c->write(wire); ec) {
      c->disarm();
      if (reused && !c->timed_out) continue;  // stale keep-alive connection
      co_return Error{fmt::format("{} {}: {}", method, base_.authority(), c->timed_out ? "timed out" : ec.message())};
    }
    ResponseHead head;
    ClientResponse resp;
    bool got_head = false;
    ChunkedValidator chunked;
    uint64_t remaining = 0;
    for (;;) {
      if (!got_head && c->buf.avail()) {
        ParseError perr;
        auto st = parse_response(std::string_view(c->buf.data.data() + c->buf.begin, c->buf.avail()), method, head, perr);
        if (st == ParseStatus::error) {
          c->disarm();
          co_return Error{fmt::format("{} {}: invalid response: {}", method, base_.authority(), perr.reason)};
        }
        if (st == ParseStatus::complete) {
          if (head.status == 100) { c->buf.begin += head.head_bytes; continue; }
          got_head = true;
          resp.status = head.status;
          for (const auto& h : head.headers) resp.headers.emplace_back(std::string(h.name), std::string(h.value));
          c->buf.begin += head.head_bytes;
          remaining = head.content_length;
        }
      }
      if (got_head) {
        std::string_view avail(c->buf.data.data() + c->buf.begin, c->buf.avail());
        bool done = false;
        size_t take = avail.size();
        if (head.body == BodyKind::none) { done = true; take = 0; }
        else if (head.body == BodyKind::length) {
          take = static_cast<size_t>(std::min<uint64_t>(take, remaining));
          resp.body.append(avail.substr(0, take));
          remaining -= take;
          done = remaining == 0;
        } else if (head.body == BodyKind::chunked) {
          auto r = chunked.feed(avail, take, &resp.body);
          if (r == ChunkedValidator::Result::error) {
            c->disarm();
            co_return Error{fmt::format("{} {}: invalid chunked response", method, base_.authority())};
          }
          done = r == ChunkedValidator::Result::done;
        } else {
          resp.body.append(avail);
        }
        c->buf.begin += take;
        if (done) {
          c->disarm();
          if (head.keep_alive && c->buf.avail() == 0 && c->open) idle_ = std::move(c);
          co_return resp;
        }
      }
      auto [ec, n] = co_await c->read_some();
      if (ec || n == 0) {
        c->disarm();
        if (got_head && head.body == BodyKind::until_close && !c->timed_out) co_return resp;
        if (!got_head && reused && c->buf.avail() == 0 && !c->timed_out) break;  // stale: retry fresh
        co_return Error{fmt::format("{} {}: {}", method, base_.authority(),
                                    c->timed_out ? "timed out" : ec ? ec.message() : "connection closed")};
      }
    }
  }
  co_return Error{fmt::format("{} {}: connection closed", method, base_.authority())};
}

asio::awaitable<Result<int>> HttpClient::stream(std::string method, std::string target, Headers headers,
                                                std::string body, double connect_timeout, double idle_timeout,
                                                std::function<bool(std::string_view)> on_data) {
  auto c = std::make_unique<Conn>(ex_, tls_context().ctx, base_.tls());
  c->buf.data.resize(65536);
  auto st = co_await connect(*c, connect_timeout);
  if (!st) co_return Error{st.error()};
  active_.push_back(c.get());
  struct Untrack {
    std::vector<Conn*>& v;
    Conn* c;
    ~Untrack() { v.erase(std::remove(v.begin(), v.end(), c), v.end()); }
  } untrack{active_, c.get()};
  c->arm(connect_timeout);
  if (auto ec = co_await c->write(build_request(base_, method, target, headers, body)); ec) {
    c->disarm();
    co_return Error{fmt::format("{} {}: {}", method, base_.authority(), c->timed_out ? "timed out" : ec.message())};
  }
  ResponseHead head;
  bool got_head = false;
  ChunkedValidator chunked;
  uint64_t remaining = 0;
  std::string piece;
  for (;;) {
    if (!got_head && c->buf.avail()) {
      ParseError perr;
      auto pst = parse_response(std::string_view(c->buf.data.data() + c->buf.begin, c->buf.avail()), method, head, perr);
      if (pst == ParseStatus::error) { c->disarm(); co_return Error{std::string("invalid response: ") + perr.reason}; }
      if (pst == ParseStatus::complete) {
        got_head = true;
        c->buf.begin += head.head_bytes;
        remaining = head.content_length;
        if (head.status != 200) {
          // Read a bounded error body for the caller's message, then stop.
          std::string err(c->buf.data.data() + c->buf.begin, std::min<size_t>(c->buf.avail(), 512));
          c->disarm();
          co_return Error{fmt::format("HTTP {}: {}", head.status, err)};
        }
      }
    }
    if (got_head && c->buf.avail()) {
      std::string_view avail(c->buf.data.data() + c->buf.begin, c->buf.avail());
      size_t take = avail.size();
      bool done = false;
      piece.clear();
      if (head.body == BodyKind::chunked) {
        auto r = chunked.feed(avail, take, &piece);
        if (r == ChunkedValidator::Result::error) { c->disarm(); co_return Error{"invalid chunked response"}; }
        done = r == ChunkedValidator::Result::done;
      } else if (head.body == BodyKind::length) {
        take = static_cast<size_t>(std::min<uint64_t>(take, remaining));
        piece.assign(avail.substr(0, take));
        remaining -= take;
        done = remaining == 0;
      } else {
        piece.assign(avail);
      }
      c->buf.begin += take;
      if (c->buf.begin == c->buf.end) c->buf.begin = c->buf.end = 0;
      if (!piece.empty() && !on_data(piece)) { c->disarm(); c->close(); co_return head.status; }
      if (done) { c->disarm(); co_return head.status; }
    }
    c->arm(got_head ? idle_timeout : connect_timeout);
    auto [ec, n] = co_await c->read_some();
    if (ec || n == 0) {
      c->disarm();
      if (got_head && head.body == BodyKind::until_close && !c->timed_out) co_return head.status;
      co_return Error{c->timed_out ? std::string("idle timeout") : ec ? ec.message() : std::string("connection closed")};
    }
  }
}

}  // namespace holdfast::http
