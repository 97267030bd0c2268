// A small asynchronous HTTP/1.1 client for the control thread (etcd, S3,
// STS): keep-alive, optional TLS with certificate verification, deadlines,
// and a streaming mode for long-lived responses such as etcd watches.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace holdfast::http {

struct Url {
  std::string scheme = "http";
  std::string host;
  uint16_t port = 80;
  std::string path;  // may be empty
  bool tls() const { return scheme == "https"; }
  std::string authority() const;  // host[:port] as a Host header value
  static Result<Url> parse(std::string_view s);
};

struct TlsOptions {
  bool verify = true;          // verify the server certificate and its name
  std::string ca_file;         // extra CA file(s), comma-separated ("system" ignored); the system store is always used
  std::string cert_file;       // client certificate (mutual TLS)
  std::string key_file;
  std::string sni;             // overrides the SNI / verified name
};

struct ClientResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string header(std::string_view name) const;
};

using Headers = std::vector<std::pair<std::string, std::string>>;

class HttpClient {
 public:
  HttpClient(boost::asio::any_io_executor ex, Url base, TlsOptions tls = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // One exchange on a kept-alive connection (reconnects once when a reused
  // connection turns out to be closed). `timeout` bounds the whole exchange.
  boost::asio::awaitable<Result<ClientResponse>> request(std::string method, std::string target, Headers headers,
                                                         std::string body, double timeout);

  // Sends a request and hands the decoded response body to `on_data` as it
  // arrives, until the body ends, `on_data` returns false, an error occurs,
  // or no byte arrives for `idle_timeout` seconds. Uses its own connection.
  boost::asio::awaitable<Result<int>> stream(std::string method, std::string target, Headers headers,
                                             std::string body, double connect_timeout, double idle_timeout,
                                             std::function<bool(std::string_view)> on_data);

  // Bounds what one response may make this client hold: a store, token
  // endpoint or log server that sends an endless head or body gets an error
  // instead of our memory. The body bound covers request()'s collected body;
  // stream() hands the body on, so its consumer bounds what it keeps.
  static constexpr size_t kDefaultMaxHeadBytes = 64 * 1024;
  static constexpr size_t kDefaultMaxBodyBytes = (64u << 20) + (64u << 10);  // a 64 MiB document and its envelope
  void set_max_response_body(size_t bytes) { max_body_bytes_ = bytes; }

  // Aborts whatever is in flight (e.g. a watch) and drops the connection.
  void cancel();
  // Closes the kept-alive connection, if any: the next request dials anew.
  void drop_idle();
  const Url& base() const { return base_; }

 private:
  struct Conn;
  struct TlsCtx;
  // Lists a connection in active_ (so cancel() reaches it) while in scope.
  struct Tracked {
    Tracked(std::vector<Conn*>& list, Conn* c) : list_(list), c_(c) { list_.push_back(c_); }
    ~Tracked() { std::erase(list_, c_); }
    std::vector<Conn*>& list_;
    Conn* c_;
  };
  TlsCtx& tls_context();
  Status tls_ready();
  std::string io_error(Conn& c, const boost::system::error_code& ec) const;
  boost::asio::awaitable<Status> connect(Conn& c, double timeout);
  boost::asio::any_io_executor ex_;
  Url base_;
  TlsOptions tls_;
  std::unique_ptr<Conn> idle_;        // kept-alive connection for request()
  std::vector<Conn*> active_;         // for cancel()
  std::unique_ptr<TlsCtx> tls_ctx_;   // created on first use
  size_t max_body_bytes_ = kDefaultMaxBodyBytes;
};

}  // namespace holdfast::http
