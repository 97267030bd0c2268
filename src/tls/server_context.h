// The OpenSSL side of the downstream TLS listener: one SSL_CTX made from
// apisix.ssl, shared by every worker (so is its session cache), holding no
// certificate of its own. For each connection the listener attaches the
// certificate table of the snapshot current at accept time; the
// client-hello callback then picks the SSL object by SNI and installs its
// certificates and protocol limits on that connection alone, so a new
// snapshot changes the next handshakes and never an open connection.
#pragma once
#include <array>
#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "core/config.h"
#include "core/status.h"
#include "tls/cert_table.h"
#include "tls/openssl_util.h"
#include "tls/ticket_keys.h"

namespace holdfast::tls {

// What the client-hello callback needs from apisix.ssl.
struct ListenerPolicy {
  Protocols protocols = kTls12 | kTls13;  // apisix.ssl.ssl_protocols
  std::string fallback_sni;               // normalised; "" = none
};

// Why a downstream handshake did not complete, for
// holdfast_tls_handshake_failures_total{reason}. Each one is logged at
// debug only: a flood of them (scanners, aborted connections) must not
// flood the log.
enum class HandshakeFailure {
  timeout,             // client_header_timeout passed (or a drain ended it)
  closed,              // the client closed or reset before finishing
  no_sni,              // no SNI and no fallback_sni
  unknown_sni,         // no status-1 server object covers the name
  malformed_sni,       // a server_name extension that does not parse
  client_certificate,  // a required client certificate missing or not verified
  protocol,            // anything else: not TLS, no common version or cipher, bad messages
};
inline constexpr size_t kHandshakeFailureKinds = 7;
const char* failure_name(HandshakeFailure f);

struct ServerContextOptions {
  std::unique_ptr<TicketKeys> tickets;  // null: hourly rotation on the steady clock
  long session_cache_size = 20480;      // sessions
  bool http2 = false;                   // ALPN offers h2 before http/1.1 (apisix.enable_http2)
};

class ServerContext {
 public:
  using Options = ServerContextOptions;

  // From apisix.ssl: TLSv1.1-1.3 as ssl_protocols says, ssl_ciphers (an
  // error when OpenSSL selects no cipher from it), the server's cipher
  // order, a session cache (20480 sessions, 10 minutes, as APISIX's
  // `ssl_session_timeout 10m`), session tickets only with
  // ssl_session_tickets (keys from `tickets`, else an hourly-rotated
  // TicketKeys of its own), and the client-hello callback.
  static Result<std::unique_ptr<ServerContext>> create(const SslConfig& cfg, Options opts = {});
  ~ServerContext();
  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;

  SSL_CTX* native() const { return ctx_.get(); }
  const ListenerPolicy& policy() const { return policy_; }

  // The context a server connection was made from (null for another SSL_CTX).
  static ServerContext* of(const SSL* ssl);
  // Called by the listener for each handshake that did not complete (any worker).
  void count_failure(HandshakeFailure f) { failures_[static_cast<size_t>(f)].fetch_add(1, std::memory_order_relaxed); }
  uint64_t failures(HandshakeFailure f) const { return failures_[static_cast<size_t>(f)].load(std::memory_order_relaxed); }
  // Called by the listener for each completed handshake.
  void count_handshake(const SSL* ssl) {
    if (SSL_session_reused(ssl)) resumptions_.fetch_add(1, std::memory_order_relaxed);
  }
  // holdfast_tls_handshake_failures_total{reason}, the shared session
  // cache's size, cap and resumptions, and the ticket keys made.
  std::string prometheus() const;

 private:
  ServerContext() = default;
  ListenerPolicy policy_;  // the callback's argument: outlives ctx_ (declared first)
  std::unique_ptr<TicketKeys> tickets_;  // likewise; null with tickets off
  long cache_size_ = 0;
  std::array<std::atomic<uint64_t>, kHandshakeFailureKinds> failures_{};
  std::atomic<uint64_t> resumptions_{0};
  SslCtxPtr ctx_;
};

// Gives a new server connection (SSL_new of ServerContext::native()) the
// table its handshake selects from; the connection keeps it alive.
// Returns false when OpenSSL cannot store it (out of memory).
bool attach_table(SSL* ssl, std::shared_ptr<const CertTable> table);

// The outcome of selecting by SNI, kept on the connection.
struct Selection {
  std::shared_ptr<const SslObject> object;  // null until a ClientHello selected one
  std::string server_name;                  // normalised: the client's SNI, or fallback_sni
  bool fallback = false;                    // the client sent no SNI and fallback_sni was used
};
// Null before the client-hello callback has selected an object.
const Selection* selection(const SSL* ssl);
// Why the client-hello callback aborted this handshake, if it did.
std::optional<HandshakeFailure> selection_failure(const SSL* ssl);

// The client certificate after a handshake, as nginx's variables give it.
struct PeerCertificate {
  std::string verify;     // "SUCCESS", "FAILED:<OpenSSL's reason>" or "NONE" ($ssl_client_verify)
  std::string subject;    // RFC 2253 ($ssl_client_s_dn); "" without a certificate
  std::string serial;     // uppercase hex, as i2a_ASN1_INTEGER ($ssl_client_serial); "" without one
};
PeerCertificate peer_certificate(const SSL* ssl);

// True when `ssl` resumed a session that was established under another
// server name than the one this handshake selected by (a session without
// a name, i.e. made without SNI, never differs).
bool resumed_from_other_sni(const SSL* ssl);

enum class SelectResult {
  installed,        // the object's certificates and protocol limits are on the connection
  malformed_sni,    // a server_name extension that does not parse: abort (decode_error)
  no_server_name,   // no SNI and no fallback_sni: abort (unrecognized_name)
  no_certificate,   // no status-1 server object covers the name: abort (unrecognized_name)
  install_failed,   // OpenSSL refused the certificates: abort (internal_error)
};

// The body of the client-hello callback, usable on its own: reads the SNI
// from the ClientHello (SSL_client_hello_get0_ext), selects from `table`,
// installs with install_object, and records the Selection when `ssl` has
// one attached.
SelectResult select_certificate(SSL* ssl, const CertTable& table, const ListenerPolicy& policy);

// Puts one object on a connection: its protocols (or the listener's when it
// has none) replace the listener's, with OpenSSL's security level lowered to
// 0 for this connection when TLSv1.1 is among them (OpenSSL 3 forbids the
// SHA-1 signatures of TLS <= 1.1 from level 1 up); then every certificate
// with its chain (SSL_use_cert_and_key: one per key type, so OpenSSL picks
// ECDSA or RSA by what the client's signature algorithms and ciphers allow).
bool install_object(SSL* ssl, const SslObject& object, Protocols listener_protocols);

}  // namespace holdfast::tls
