#include "tls/client_context.h"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <algorithm>

#include <boost/asio/ip/address.hpp>

namespace holdfast::tls {

std::string client_identity(const ClientOptions& o) {
  return fmt::format("v{}|{}|{}", o.verify ? 1 : 0, o.verify ? o.trusted_certificate : "", o.client_identity);
}

Result<std::shared_ptr<ClientContext>> make_client_context(const ClientOptions& o) {
  auto c = std::make_shared<ClientContext>();
  c->verify = o.verify;
  c->identity = client_identity(o);
  SSL_CTX* ctx = c->ctx.native_handle();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // Sessions are kept per pool key by the workers (SSL_get1_session), not in
  // OpenSSL's client cache.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (o.verify) {
    boost::system::error_code ec;
    bool system = false;
    // "system", or CA files separated by commas ("system" among them).
    const std::string& list = o.trusted_certificate;
    for (size_t pos = 0; pos <= list.size();) {
      size_t comma = std::min(list.find(',', pos), list.size());
      std::string path = list.substr(pos, comma - pos);
      pos = comma + 1;
      path.erase(0, path.find_first_not_of(" \t"));
      path.erase(path.find_last_not_of(" \t") + 1);
      if (path.empty()) continue;
      if (path == "system") { system = true; continue; }
      c->ctx.load_verify_file(path, ec);
      if (ec) return Error{fmt::format("cannot load the CA file {}: {}", path, ec.message())};
    }
    if (system || list.empty()) {
      c->ctx.set_default_verify_paths(ec);
      if (ec) return Error{fmt::format("cannot load the system CA store: {}", ec.message())};
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (o.client) {
    ERR_clear_error();
    if (SSL_CTX_use_cert_and_key(ctx, o.client->leaf.get(), o.client->key.get(), o.client->chain.get(), 1) != 1)
      return Error{fmt::format("OpenSSL refuses the client certificate: {}", openssl_error())};
  }
  return c;
}

std::string sni_for_host(std::string_view h) {
  if (!h.empty() && h[0] == '[') return {};  // an IPv6 literal
  if (auto colon = h.find(':'); colon != std::string_view::npos) h = h.substr(0, colon);
  if (!h.empty() && h.back() == '.') h.remove_suffix(1);
  std::string out(h);
  for (auto& ch : out) ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
  boost::system::error_code ec;
  boost::asio::ip::make_address(out, ec);
  if (!ec) return {};
  return out;
}

bool prepare_client(SSL* ssl, const ClientContext& c, const std::string& sni, const std::string& host) {
  if (!sni.empty() && SSL_set_tlsext_host_name(ssl, sni.c_str()) != 1) return false;
  if (!c.verify) return true;
  if (!sni.empty()) return SSL_set1_host(ssl, sni.c_str()) == 1;
  // No name: the certificate must carry the address connected to.
  X509_VERIFY_PARAM* p = SSL_get0_param(ssl);
  return X509_VERIFY_PARAM_set1_ip_asc(p, host.c_str()) == 1;
}

}  // namespace holdfast::tls
