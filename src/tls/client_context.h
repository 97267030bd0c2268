// Client-side TLS for upstreams (`scheme: https`): one OpenSSL context per
// distinct verification / CA / client-certificate combination, built on the
// control side while a snapshot compiles and shared, read-only, by every
// worker's connections (SSL_new is thread-safe on a finished SSL_CTX).
#pragma once
#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <string>

#include "core/status.h"
#include "tls/cert_table.h"

namespace holdfast::tls {

struct ClientContext {
  ClientContext() : ctx(boost::asio::ssl::context::tls_client) {}
  boost::asio::ssl::context ctx;
  bool verify = false;
  // Verification, CA and client certificate as one string: part of the
  // upstream pool key, so a connection made with one never serves another.
  std::string identity;
};

struct ClientOptions {
  bool verify = false;
  std::string trusted_certificate = "system";  // apisix.ssl.ssl_trusted_certificate
  const Certificate* client = nullptr;         // upstream mTLS
  std::string client_identity;                 // names `client` in `identity` (no key bytes)
};

// The identity a context for `o` would have (to find one already built).
std::string client_identity(const ClientOptions& o);
Result<std::shared_ptr<ClientContext>> make_client_context(const ClientOptions& o);

// Prepares a new client connection: SNI (none for an IP literal or an empty
// name) and, when verifying, the name or address the certificate must carry.
// False: OpenSSL refused (out of memory).
bool prepare_client(SSL* ssl, const ClientContext& c, const std::string& sni, const std::string& host);

// The SNI for a Host header value: without port and brackets, lowercased,
// trailing dot removed; empty for an IP literal (RFC 6066 §3).
std::string sni_for_host(std::string_view host_header);

}  // namespace holdfast::tls
