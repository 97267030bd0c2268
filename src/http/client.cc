#include "http/client.h"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "http/codec.h"
#include "transport/timed.h"

namespace holdfast::http {
namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using transport::Buf;
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
    // if/else rather than ?: around co_await (GCC 12 coroutine temporaries).
    std::tuple<error_code, size_t> r;
    if (tls) r = co_await s.async_read_some(b, tok);
    else r = co_await s.next_layer().async_read_some(b, tok);
    auto [ec, n] = r;
    if (!ec) buf.end += n;
    co_return std::make_pair(ec, n);
  }
  asio::awaitable<error_code> write(std::string_view data) {
    auto b = asio::buffer(data.data(), data.size());
    std::tuple<error_code, size_t> r;
    if (tls) r = co_await asio::async_write(s, b, tok);
    else r = co_await asio::async_write(s.next_layer(), b, tok);
    co_return std::get<0>(r);
  }
};

namespace {

// Decodes a response body from a connection's buffer, whatever its framing;
// shared by request() (which collects it) and stream() (which hands it on).
struct BodyReader {
  enum class Step { more, done, error };
  BodyKind kind = BodyKind::none;
  uint64_t remaining = 0;
  ChunkedValidator chunked;

  void start(const ResponseHead& head) {
    kind = head.body;
    remaining = head.content_length;
  }
  // Moves what is buffered into `sink`.
  Step consume(Buf& buf, std::string& sink) {
    std::string_view avail(buf.data.data() + buf.begin, buf.avail());
    size_t take = avail.size();
    Step step = Step::more;
    switch (kind) {
      case BodyKind::none:
        take = 0;
        step = Step::done;
        break;
      case BodyKind::length:
        take = static_cast<size_t>(std::min<uint64_t>(take, remaining));
        sink.append(avail.substr(0, take));
        remaining -= take;
        if (remaining == 0) step = Step::done;
        break;
      case BodyKind::chunked: {
        auto r = chunked.feed(avail, take, &sink);
        if (r == ChunkedValidator::Result::error) return Step::error;
        if (r == ChunkedValidator::Result::done) step = Step::done;
        break;
      }
      case BodyKind::until_close:
        sink.append(avail);
        break;
    }
    buf.begin += take;
    if (buf.begin == buf.end) buf.begin = buf.end = 0;
    return step;
  }
};

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
  // A CA, certificate or key file that cannot be loaded is kept in `error`
  // rather than thrown: the throwing overloads escaped the caller's coroutine
  // and stopped the etcd source for good. connect() reports it as a normal
  // error (naming the file) and the next attempt loads the files again.
  explicit TlsCtx(const TlsOptions& o) : ctx(ssl::context::tls_client) {
    error_code ec;
    ctx.set_default_verify_paths(ec);
    auto failed = [&](const char* what, const std::string& file) {
      if (ec) error = fmt::format("cannot load the TLS {} {}: {}", what, file, ec.message());
      return !error.empty();
    };
    // ca_file: one path, or several separated by commas as APISIX's
    // ssl_trusted_certificate; "system" names the store loaded above.
    for (size_t pos = 0; pos <= o.ca_file.size();) {
      size_t comma = std::min(o.ca_file.find(',', pos), o.ca_file.size());
      std::string path = o.ca_file.substr(pos, comma - pos);
      pos = comma + 1;
      path.erase(0, path.find_first_not_of(" \t"));
      path.erase(path.find_last_not_of(" \t") + 1);
      if (path.empty() || path == "system") continue;
      ctx.load_verify_file(path, ec);
      if (failed("CA file", path)) return;
    }
    if (!o.cert_file.empty()) ctx.use_certificate_chain_file(o.cert_file, ec);
    if (failed("certificate file", o.cert_file)) return;
    if (!o.key_file.empty()) ctx.use_private_key_file(o.key_file, ssl::context::pem, ec);
    if (failed("key file", o.key_file)) return;
    ctx.set_verify_mode(o.verify ? ssl::verify_peer : ssl::verify_none);
  }
  ssl::context ctx;
  std::string error;
};

HttpClient::TlsCtx& HttpClient::tls_context() {
  if (!tls_ctx_) tls_ctx_ = std::make_unique<TlsCtx>(tls_);
  return *tls_ctx_;
}

// The TLS setup for a new https connection, or why there is none. A failed
// load is dropped so that the next connection tries the files again (a
// secret mounted late, a certificate rotated).
Status HttpClient::tls_ready() {
  if (!base_.tls()) return {};
  if (tls_context().error.empty()) return {};
  std::string e = std::move(tls_ctx_->error);
  tls_ctx_.reset();
  return Error{e};
}

namespace {

// Messages for TLS failures that say why: the X.509 verification result of a
// failed handshake ("unable to get local issuer certificate", "hostname
// mismatch"...), or a hint when the server's alert is about our certificate
// (under TLS 1.3 that alert only arrives with the first read or write).
std::string tls_error(const error_code& ec, SSL* ssl, bool have_client_cert) {
  std::string msg = ec.message();
  if (ec.category() != asio::error::get_ssl_category()) return msg;
  if (long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK; vr != X509_V_OK)
    return fmt::format("{}: {}", msg, X509_verify_cert_error_string(vr));
  switch (ERR_GET_REASON(static_cast<unsigned long>(static_cast<unsigned int>(ec.value())))) {
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
      return msg + (have_client_cert ? " (the server refused our client certificate)"
                                     : " (the server requires a client certificate; none is configured)");
    default:
      return msg;
  }
}

bool is_ip_literal(const std::string& host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

}  // namespace

std::string HttpClient::io_error(Conn& c, const error_code& ec) const {
  return c.tls ? tls_error(ec, nullptr, !tls_.cert_file.empty()) : ec.message();
}

HttpClient::HttpClient(asio::any_io_executor ex, Url base, TlsOptions tls)
    : ex_(std::move(ex)), base_(std::move(base)), tls_(std::move(tls)) {}

HttpClient::~HttpClient() {
  cancel();
  idle_.reset();
}

void HttpClient::drop_idle() {
  if (idle_) idle_->close();
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
    // `sni` (else the URL host) is both the SNI and the name verified.
    const std::string& name = tls_.sni.empty() ? base_.host : tls_.sni;
    SSL* ssl = c.s.native_handle();
    const bool ip = is_ip_literal(name);
    // RFC 6066 §3: no IP literal in SNI.
    if (!ip && !SSL_set_tlsext_host_name(ssl, name.c_str())) {
      c.disarm();
      co_return Error{"cannot set TLS SNI"};
    }
    // OpenSSL's own name check (IP SANs for an address), so that a mismatch
    // is reported as such by the verify result rather than as an
    // "unspecified" error from a verify callback.
    if (tls_.verify) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (!(ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str()) : X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0))) {
        c.disarm();
        co_return Error{"cannot set the TLS name to verify: " + name};
      }
    }
    auto [hec] = co_await c.s.async_handshake(ssl::stream_base::client, tok);
    if (hec) {
      c.disarm();
      co_return Error{fmt::format("TLS handshake with {} failed: {}", base_.authority(),
                                  c.timed_out ? "timed out" : tls_error(hec, tls_.verify ? ssl : nullptr, !tls_.cert_file.empty()))};
    }
  }
  c.disarm();
  c.open = true;
  co_return Status{};
}

asio::awaitable<Result<ClientResponse>> HttpClient::request(std::string method, std::string target, Headers headers,
                                                            std::string body, double timeout) {
  if (auto ready = tls_ready(); !ready) co_return Error{ready.error()};
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
    Tracked tracked(active_, c.get());
    c->arm(timeout);
    c->buf.begin = c->buf.end = 0;
    if (auto ec = co_await c->write(wire); ec) {
      c->disarm();
      if (reused && !c->timed_out) continue;  // stale keep-alive connection
      co_return Error{fmt::format("{} {}: {}", method, base_.authority(), c->timed_out ? "timed out" : io_error(*c, ec))};
    }
    ResponseHead head;
    ClientResponse resp;
    bool got_head = false;
    BodyReader reader;
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
          reader.start(head);
          if (head.body == BodyKind::length && head.content_length > max_body_bytes_) {
            c->disarm();
            co_return Error{fmt::format("{} {}: response body of {} bytes is over the limit of {}", method,
                                        base_.authority(), head.content_length, max_body_bytes_)};
          }
        } else if (c->buf.avail() > kDefaultMaxHeadBytes) {
          c->disarm();
          co_return Error{fmt::format("{} {}: response head over {} bytes", method, base_.authority(), kDefaultMaxHeadBytes)};
        }
      }
      if (got_head) {
        auto step = reader.consume(c->buf, resp.body);
        if (resp.body.size() > max_body_bytes_) {
          c->disarm();
          co_return Error{fmt::format("{} {}: response body over the limit of {} bytes", method, base_.authority(),
                                      max_body_bytes_)};
        }
        if (step == BodyReader::Step::error) {
          c->disarm();
          co_return Error{fmt::format("{} {}: invalid chunked response", method, base_.authority())};
        }
        if (step == BodyReader::Step::done) {
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
                                    c->timed_out ? "timed out" : ec ? io_error(*c, ec) : "connection closed")};
      }
    }
  }
  co_return Error{fmt::format("{} {}: connection closed", method, base_.authority())};
}

asio::awaitable<Result<int>> HttpClient::stream(std::string method, std::string target, Headers headers,
                                                std::string body, double connect_timeout, double idle_timeout,
                                                std::function<bool(std::string_view)> on_data) {
  if (auto ready = tls_ready(); !ready) co_return Error{ready.error()};
  auto c = std::make_unique<Conn>(ex_, tls_context().ctx, base_.tls());
  c->buf.data.resize(65536);
  auto st = co_await connect(*c, connect_timeout);
  if (!st) co_return Error{st.error()};
  Tracked tracked(active_, c.get());
  c->arm(connect_timeout);
  if (auto ec = co_await c->write(build_request(base_, method, target, headers, body)); ec) {
    c->disarm();
    co_return Error{fmt::format("{} {}: {}", method, base_.authority(), c->timed_out ? "timed out" : io_error(*c, ec))};
  }
  ResponseHead head;
  bool got_head = false;
  BodyReader reader;
  std::string piece;
  for (;;) {
    if (!got_head && c->buf.avail()) {
      ParseError perr;
      auto pst = parse_response(std::string_view(c->buf.data.data() + c->buf.begin, c->buf.avail()), method, head, perr);
      if (pst == ParseStatus::error) { c->disarm(); co_return Error{std::string("invalid response: ") + perr.reason}; }
      if (pst == ParseStatus::incomplete && c->buf.avail() > kDefaultMaxHeadBytes) {
        c->disarm();
        co_return Error{fmt::format("response head over {} bytes", kDefaultMaxHeadBytes)};
      }
      if (pst == ParseStatus::complete) {
        got_head = true;
        c->buf.begin += head.head_bytes;
        reader.start(head);
        if (head.status != 200) {
          // A bounded piece of the error body for the caller's message, then stop.
          std::string err(c->buf.data.data() + c->buf.begin, std::min<size_t>(c->buf.avail(), 512));
          c->disarm();
          co_return Error{fmt::format("HTTP {}: {}", head.status, err)};
        }
      }
    }
    if (got_head && c->buf.avail()) {
      piece.clear();
      auto step = reader.consume(c->buf, piece);
      if (step == BodyReader::Step::error) { c->disarm(); co_return Error{"invalid chunked response"}; }
      if (!piece.empty() && !on_data(piece)) { c->disarm(); c->close(); co_return head.status; }
      if (step == BodyReader::Step::done) { c->disarm(); co_return head.status; }
    }
    c->arm(got_head ? idle_timeout : connect_timeout);
    auto [ec, n] = co_await c->read_some();
    if (ec || n == 0) {
      c->disarm();
      if (got_head && head.body == BodyKind::until_close && !c->timed_out) co_return head.status;
      co_return Error{c->timed_out ? std::string("idle timeout") : ec ? io_error(*c, ec) : std::string("connection closed")};
    }
  }
}

}  // namespace holdfast::http
