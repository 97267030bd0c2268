// The certificate table: the `ssls` of one configuration compiled into
// parsed certificates and keys, indexed by SNI with APISIX's rules
// (apisix/ssl/router/radixtree_sni.lua, APISIX_COMPAT "SSL"). Built on the
// control thread, immutable afterwards, read by the TLS listener's
// client-hello callback (tls/server_context.h) on any worker.
#pragma once
#include <boost/json/array.hpp>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/data_encryption.h"
#include "core/user_regex.h"
#include "tls/openssl_util.h"

namespace holdfast::tls {

// TLS versions as a bit set (an SSL object's `ssl_protocols`, the
// listener's apisix.ssl.ssl_protocols).
using Protocols = uint8_t;
inline constexpr Protocols kTls11 = 1, kTls12 = 2, kTls13 = 4;
// "TLSv1.1", "TLSv1.2", "TLSv1.3"; 0 for anything else.
Protocols protocol_bit(std::string_view name);
Protocols protocol_mask(const std::vector<std::string>& names);

// One certificate chain with its private key.
struct Certificate {
  X509Ptr leaf;
  X509StackPtr chain;     // the intermediates that followed the leaf in the PEM, in order (may be empty)
  PkeyPtr key;
  std::string key_type;   // "RSA", "EC", "ED25519", ... (OpenSSL's name of the key type)
  int64_t not_before = 0;  // Unix seconds
  int64_t not_after = 0;   // Unix seconds: the expiry time
};

// An SSL object's `client` (APISIX: mTLS with its clients).
struct ClientVerify {
  X509StorePtr store;          // client.ca: the CAs a client certificate must chain to
  X509NameStackPtr ca_names;   // their subjects, sent in the CertificateRequest
  int depth = 1;               // client.depth (APISIX's default 1, as nginx's ssl_verify_depth)
  // client.skip_mtls_uri_regex: when set, the handshake completes without a
  // (valid) certificate and the pipeline answers 400 to paths that match
  // none of these (unanchored search on $uri, as ngx.re.match).
  std::vector<std::shared_ptr<const UserRegex>> skip_mtls_uri_regex;
};

// One SSL object that compiled.
struct SslObject {
  std::string id;
  bool server = true;                // type: server (else client: used for upstream mTLS only)
  bool enabled = true;               // status 1
  std::vector<std::string> snis;     // normalised (lowercase, no trailing '.')
  std::vector<Certificate> certificates;  // cert/key first, then certs[i]/keys[i]
  Protocols protocols = 0;           // its ssl_protocols; 0 = the listener's
  std::shared_ptr<const ClientVerify> client;  // null: no client certificate is asked for
  std::array<unsigned char, 32> digest{};  // of the resource as given: unchanged objects are reused
  std::vector<std::string> notes;    // warnings found while compiling it (see CertTable::warnings)
};

// One certificate (with intermediates) and its key from PEM, the key
// decrypted with `keyring` when it is not PEM: an upstream's
// tls.client_cert/client_key. The error names the fields, never key bytes.
Result<Certificate> parse_certificate(const std::string& cert_pem, const std::string& key_pem,
                                      const data_encryption::Keyring* keyring);

// An SSL object left out (or a note on one that compiled). Never holds key
// material: reasons come from the checks here and OpenSSL's error texts.
struct Problem {
  std::string ssl_id;
  std::string reason;
};

class CertTable {
 public:
  struct Options {
    // Objects whose resource is unchanged are taken from here (no parsing,
    // no log line again).
    const CertTable* previous = nullptr;
    // Keys that are not PEM are decrypted with it (APISIX data encryption);
    // null when the document was decrypted already (config sources do).
    const data_encryption::Keyring* keyring = nullptr;
    int64_t now_unix = 0;  // for expiry warnings; 0 = the clock
  };

  // Compiles `ssls` (the array of a standalone-shaped document; null = none).
  // An object that does not compile is left out with a Problem and an error
  // log line naming its id; the others are unaffected.
  static std::shared_ptr<const CertTable> build(const boost::json::array* ssls, const Options& opts);
  static std::shared_ptr<const CertTable> build(const boost::json::array* ssls) { return build(ssls, Options{}); }

  // The server object for a normalised SNI (see normalize_sni): an exact
  // name first, then a wildcard `*.example.com` that covers exactly one
  // more label (a `*` prefix stands for characters without '.'), longest
  // suffix first, then an object whose SNI is `*` alone. Only server objects
  // with status 1 take part. Null: no certificate (the handshake aborts).
  const SslObject* match(std::string_view sni) const;

  // Any compiled object by id (client objects included).
  const SslObject* find_id(std::string_view id) const;

  const std::vector<std::shared_ptr<const SslObject>>& objects() const { return objects_; }
  // Objects left out and why, in document order (for `holdfast -t`).
  const std::vector<Problem>& problems() const { return problems_; }
  // Objects that compiled with something worth saying (expired, not yet
  // valid, TLSv1.1, a second certificate of the same key type, an SNI that
  // another object claimed first).
  const std::vector<Problem>& warnings() const { return warnings_; }

  struct Expiry {
    std::string ssl_id;
    std::vector<std::string> snis;
    std::string key_type;
    int64_t not_after = 0;
  };
  // One row per certificate of every server object with status 1.
  std::vector<Expiry> expiries() const;

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Index = std::unordered_map<std::string, const SslObject*, Hash, std::equal_to<>>;

  std::vector<std::shared_ptr<const SslObject>> objects_;
  std::unordered_map<std::string, size_t, Hash, std::equal_to<>> by_id_;  // index into objects_
  Index exact_;
  Index wildcard_;  // keyed by the pattern without its leading '*'
  const SslObject* any_ = nullptr;  // sni "*"
  std::vector<Problem> problems_;
  std::vector<Problem> warnings_;
  // Digest of every object left out, with its problem, so that an unchanged
  // bad object is reported again without another log line.
  std::unordered_map<std::string, std::pair<std::array<unsigned char, 32>, std::string>> failed_;
};

// Unix seconds as 2026-12-01T20:00:00Z.
std::string utc_time(int64_t unix_seconds);

}  // namespace holdfast::tls
