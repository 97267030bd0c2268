#include "tls/server_context.h"

#include <openssl/err.h>
#include <fmt/format.h>
#include <openssl/tls1.h>


#include "core/log.h"
#include "tls/sni.h"

namespace holdfast::tls {

namespace {

// Per-connection state in the SSL's ex_data, freed with the SSL.
struct ConnState {
  std::shared_ptr<const CertTable> table;
  Selection selection;
  std::optional<HandshakeFailure> failure;  // set when the client-hello callback aborts
};

void free_state(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<ConnState*>(ptr); }

int state_index() {
  static const int idx = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, free_state);
  return idx;
}

ConnState* state_of(const SSL* ssl) { return static_cast<ConnState*>(SSL_get_ex_data(ssl, state_index())); }

int ctx_index() {
  static const int idx = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return idx;
}

constexpr uint64_t kAllVersionOptions =
    SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 | SSL_OP_NO_TLSv1_2 | SSL_OP_NO_TLSv1_3;

// As nginx's ssl_protocols and ngx.ssl.clienthello.set_protocols: the
// versions not listed are switched off by option.
uint64_t version_options(Protocols p) {
  uint64_t no = SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1;
  if (!(p & kTls11)) no |= SSL_OP_NO_TLSv1_1;
  if (!(p & kTls12)) no |= SSL_OP_NO_TLSv1_2;
  if (!(p & kTls13)) no |= SSL_OP_NO_TLSv1_3;
  return no;
}

int client_hello_cb(SSL* ssl, int* alert, void* arg) {
  const auto* policy = static_cast<const ListenerPolicy*>(arg);
  ConnState* st = state_of(ssl);
  if (!st || !st->table) {
    // The listener did not attach a table: nothing to serve.
    log::error("tls: handshake without a certificate table");
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_CLIENT_HELLO_ERROR;
  }
  switch (select_certificate(ssl, *st->table, *policy)) {
    case SelectResult::installed:
      return SSL_CLIENT_HELLO_SUCCESS;
    case SelectResult::malformed_sni:
      *alert = SSL_AD_DECODE_ERROR;
      st->failure = HandshakeFailure::malformed_sni;
      break;
    case SelectResult::no_server_name:
      *alert = SSL_AD_UNRECOGNIZED_NAME;
      st->failure = HandshakeFailure::no_sni;
      break;
    case SelectResult::no_certificate:
      *alert = SSL_AD_UNRECOGNIZED_NAME;
      st->failure = HandshakeFailure::unknown_sni;
      break;
    case SelectResult::install_failed:
      *alert = SSL_AD_INTERNAL_ERROR;
      st->failure = HandshakeFailure::protocol;
      break;
  }
  return SSL_CLIENT_HELLO_ERROR;
}

// The SNI was handled by the client-hello callback; accepting it here as
// well makes OpenSSL acknowledge it and record it in the session, where
// resumed_from_other_sni finds it (OpenSSL stores a session's host name
// only when a servername callback accepted it).
int accept_server_name(SSL*, int*, void*) { return SSL_TLSEXT_ERR_OK; }

// With skip_mtls_uri_regex the handshake must complete whatever the client
// presents (APISIX: reject_in_handshake false); the outcome stays in
// SSL_get_verify_result for $ssl_client_verify and the pipeline's check,
// as nginx's own verify callback does.
int accept_any_cert(int, X509_STORE_CTX*) { return 1; }

}  // namespace

bool install_object(SSL* ssl, const SslObject& object, Protocols listener_protocols) {
  const Protocols p = object.protocols ? object.protocols : listener_protocols;
  SSL_clear_options(ssl, kAllVersionOptions);
  SSL_set_options(ssl, version_options(p));
  if (p & kTls11) SSL_set_security_level(ssl, 0);
  for (const auto& c : object.certificates) {
    if (SSL_use_cert_and_key(ssl, c.leaf.get(), c.key.get(), c.chain.get(), 1) != 1) {
      log::error("tls: ssl {}: OpenSSL refused its {} certificate: {}", object.id, c.key_type, openssl_error());
      return false;
    }
  }
  if (const ClientVerify* c = object.client.get()) {
    // The object's CAs verify the client and are named in the
    // CertificateRequest; without skip_mtls_uri_regex a missing or
    // unverifiable certificate fails the handshake.
    const bool required = c->skip_mtls_uri_regex.empty();
    STACK_OF(X509_NAME)* names = SSL_dup_CA_list(c->ca_names.get());
    if (SSL_set1_verify_cert_store(ssl, c->store.get()) != 1 || !names) {
      sk_X509_NAME_pop_free(names, X509_NAME_free);
      log::error("tls: ssl {}: cannot install its client CA: {}", object.id, openssl_error("out of memory"));
      return false;
    }
    SSL_set0_CA_list(ssl, names);
    SSL_set_verify_depth(ssl, c->depth);
    SSL_set_verify(ssl, required ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
                   required ? nullptr : accept_any_cert);
  } else {
    SSL_set_verify(ssl, SSL_VERIFY_NONE, nullptr);
  }
  return true;
}

SelectResult select_certificate(SSL* ssl, const CertTable& table, const ListenerPolicy& policy) {
  std::string name;
  bool fallback = false;
  const unsigned char* ext = nullptr;
  size_t ext_len = 0;
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &ext_len) == 1) {
    auto parsed = parse_server_name_ext(std::string_view(reinterpret_cast<const char*>(ext), ext_len));
    if (parsed.kind != ServerNameExt::Kind::name) {
      log::debug("tls: handshake aborted: malformed server_name extension");
      return SelectResult::malformed_sni;
    }
    name = std::move(parsed.name);
  } else if (!policy.fallback_sni.empty()) {
    // fallback_sni stands in only for a missing SNI, never for an unknown one.
    name = policy.fallback_sni;
    fallback = true;
  } else {
    log::debug("tls: handshake aborted: the client sent no SNI and apisix.ssl.fallback_sni is not set");
    return SelectResult::no_server_name;
  }
  const SslObject* obj = table.match(name);
  if (!obj) {
    // The name is printable ASCII (parse_server_name_ext).
    log::debug("tls: handshake aborted: no certificate for SNI {}", name);
    return SelectResult::no_certificate;
  }
  if (!install_object(ssl, *obj, policy.protocols)) return SelectResult::install_failed;
  if (ConnState* st = state_of(ssl)) {
    // Aliasing: the selected object keeps the whole table alive.
    st->selection.object = std::shared_ptr<const SslObject>(st->table, obj);
    st->selection.server_name = std::move(name);
    st->selection.fallback = fallback;
  }
  return SelectResult::installed;
}

PeerCertificate peer_certificate(const SSL* ssl) {
  PeerCertificate p;
  // nginx's order: a failed verification first, then a missing certificate.
  const long rc = SSL_get_verify_result(ssl);
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (rc != X509_V_OK) p.verify = std::string("FAILED:") + X509_verify_cert_error_string(rc);
  else p.verify = cert ? "SUCCESS" : "NONE";
  if (!cert) return p;
  auto bio_text = [](BIO* b) {
    char* data = nullptr;
    const long n = BIO_get_mem_data(b, &data);
    return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
  };
  if (BioPtr b{BIO_new(BIO_s_mem())}) {
    // XN_FLAG_RFC2253 escapes control characters and non-ASCII (ESC_FLAG_CTRL,
    // ESC_FLAG_MSB), so the text is printable.
    if (X509_NAME_print_ex(b.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) p.subject = bio_text(b.get());
  }
  if (BioPtr b{BIO_new(BIO_s_mem())}) {
    if (i2a_ASN1_INTEGER(b.get(), X509_get0_serialNumber(cert)) > 0) p.serial = bio_text(b.get());
  }
  ERR_clear_error();
  return p;
}

bool resumed_from_other_sni(const SSL* ssl) {
  if (!SSL_session_reused(ssl)) return false;
  const SSL_SESSION* sess = SSL_get_session(ssl);
  const char* was = sess ? SSL_SESSION_get0_hostname(sess) : nullptr;
  if (!was) return false;
  const ConnState* st = state_of(ssl);
  const std::string now = st ? st->selection.server_name : std::string();
  return normalize_sni(was) != now;
}

bool attach_table(SSL* ssl, std::shared_ptr<const CertTable> table) {
  if (ConnState* st = state_of(ssl)) {
    st->table = std::move(table);
    st->selection = {};
    st->failure.reset();
    return true;
  }
  auto* st = new ConnState{std::move(table), {}, {}};
  if (SSL_set_ex_data(ssl, state_index(), st) != 1) {
    delete st;
    return false;
  }
  return true;
}

const Selection* selection(const SSL* ssl) {
  const ConnState* st = state_of(ssl);
  return st && st->selection.object ? &st->selection : nullptr;
}

std::optional<HandshakeFailure> selection_failure(const SSL* ssl) {
  const ConnState* st = state_of(ssl);
  return st ? st->failure : std::nullopt;
}

const char* failure_name(HandshakeFailure f) {
  switch (f) {
    case HandshakeFailure::timeout: return "timeout";
    case HandshakeFailure::closed: return "closed";
    case HandshakeFailure::no_sni: return "no_sni";
    case HandshakeFailure::unknown_sni: return "unknown_sni";
    case HandshakeFailure::malformed_sni: return "malformed_sni";
    case HandshakeFailure::client_certificate: return "client_certificate";
    case HandshakeFailure::protocol: return "protocol";
  }
  return "protocol";
}

ServerContext* ServerContext::of(const SSL* ssl) {
  return static_cast<ServerContext*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index()));
}

std::string ServerContext::prometheus() const {
  std::string out =
      "# HELP holdfast_tls_handshake_failures_total Downstream TLS handshakes that did not complete, by reason\n"
      "# TYPE holdfast_tls_handshake_failures_total counter\n";
  for (size_t i = 0; i < kHandshakeFailureKinds; ++i)
    out += fmt::format("holdfast_tls_handshake_failures_total{{reason=\"{}\"}} {}\n",
                       failure_name(static_cast<HandshakeFailure>(i)), failures_[i].load(std::memory_order_relaxed));
  SSL_CTX* ctx = ctx_.get();
  out += fmt::format(
      "# HELP holdfast_tls_session_cache_sessions Sessions in the server session cache shared by all workers\n"
      "# TYPE holdfast_tls_session_cache_sessions gauge\nholdfast_tls_session_cache_sessions {}\n"
      "# HELP holdfast_tls_session_cache_size_max Sessions the server session cache holds at most\n"
      "# TYPE holdfast_tls_session_cache_size_max gauge\nholdfast_tls_session_cache_size_max {}\n"
      "# HELP holdfast_tls_session_resumptions_total Handshakes that resumed a session (cache or ticket)\n"
      "# TYPE holdfast_tls_session_resumptions_total counter\nholdfast_tls_session_resumptions_total {}\n",
      SSL_CTX_sess_number(ctx), cache_size_, resumptions_.load(std::memory_order_relaxed));
  if (tickets_)
    out += fmt::format(
        "# HELP holdfast_tls_ticket_keys_total Session-ticket keys made (one at start, one per rotation)\n"
        "# TYPE holdfast_tls_ticket_keys_total counter\nholdfast_tls_ticket_keys_total {}\n",
        tickets_->generation());
  return out;
}

ServerContext::~ServerContext() = default;

namespace {
// ALPN: the server's preference, h2 then http/1.1 (only http/1.1 when
// HTTP/2 is off). A client that offers neither gets no ALPN and speaks
// HTTP/1.1, as with nginx.
constexpr unsigned char kAlpnH2[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
constexpr unsigned char kAlpnH1[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned inlen,
                void* arg) {
  const bool h2 = arg != nullptr;
  const unsigned char* ours = h2 ? kAlpnH2 : kAlpnH1;
  const unsigned ours_len = h2 ? sizeof kAlpnH2 : sizeof kAlpnH1;
  unsigned char* sel = nullptr;
  if (SSL_select_next_proto(&sel, outlen, ours, ours_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}
}  // namespace

Result<std::unique_ptr<ServerContext>> ServerContext::create(const SslConfig& cfg, Options opts) {
  std::unique_ptr<ServerContext> sc(new ServerContext());
  sc->policy_.protocols = protocol_mask(cfg.protocols);
  if (!sc->policy_.protocols) return Error{"apisix.ssl.ssl_protocols: no supported protocol"};
  sc->policy_.fallback_sni = normalize_sni(cfg.fallback_sni);
  ERR_clear_error();
  sc->ctx_.reset(SSL_CTX_new(TLS_server_method()));
  SSL_CTX* ctx = sc->ctx_.get();
  if (!ctx) return Error{"tls: cannot create an SSL context: " + openssl_error()};
  // The versions Holdfast can speak; the options below (and per SSL object
  // in the callback) choose among them. Setting the range here also
  // overrides a MinProtocol from the system's openssl.cnf, as ssl_protocols
  // is the operator's word.
  SSL_CTX_set_min_proto_version(ctx, TLS1_1_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  // SSL_OP_IGNORE_UNEXPECTED_EOF (as nginx with OpenSSL 3): a client that
  // closes without close_notify ends the connection cleanly instead of with
  // a fatal error that drops its session from the cache. HTTP framing, not
  // close_notify, tells the pipeline whether a request body was cut short.
  SSL_CTX_set_options(ctx, version_options(sc->policy_.protocols) | SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
  if (!cfg.session_tickets) {
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  } else {
    // OpenSSL's own ticket key is made once and never changes: a stolen key
    // would decrypt every session for the process's life. Rotate instead.
    sc->tickets_ = opts.tickets ? std::move(opts.tickets) : std::make_unique<TicketKeys>();
    if (!sc->tickets_->install(ctx)) return Error{"tls: cannot install the session-ticket keys: " + openssl_error()};
  }
  if (SSL_CTX_set_cipher_list(ctx, cfg.ciphers.c_str()) != 1)
    return Error{"apisix.ssl.ssl_ciphers: OpenSSL selects no cipher from this list: " + openssl_error()};
  static const unsigned char kSidCtx[] = "holdfast";
  SSL_CTX_set_session_id_context(ctx, kSidCtx, sizeof kSidCtx - 1);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  // Bounded: when full, OpenSSL drops the oldest session for a new one;
  // expired ones are flushed every 255 handshakes.
  sc->cache_size_ = opts.session_cache_size;
  SSL_CTX_sess_set_cache_size(ctx, opts.session_cache_size);
  SSL_CTX_set_timeout(ctx, 600);
  SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, &sc->policy_);
  SSL_CTX_set_tlsext_servername_callback(ctx, accept_server_name);
  SSL_CTX_set_alpn_select_cb(ctx, select_alpn, opts.http2 ? reinterpret_cast<void*>(1) : nullptr);
  if (SSL_CTX_set_ex_data(ctx, ctx_index(), sc.get()) != 1) return Error{"tls: " + openssl_error("out of memory")};
  return sc;
}

}  // namespace holdfast::tls
