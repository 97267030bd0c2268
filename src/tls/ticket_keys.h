// Session-ticket keys for the downstream listener (apisix.ssl.ssl_session_tickets):
// made at start, rotated every period (an hour, as nginx's and APISIX's
// practice), the previous key kept so tickets issued just before a rotation
// still resume. Shared by all workers through the one SSL_CTX.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <mutex>

#include <openssl/ssl.h>

namespace holdfast::tls {

class TicketKeys {
 public:
  using Clock = std::function<int64_t()>;  // seconds; monotonic
  static constexpr int64_t kRotationSeconds = 3600;

  // `now` defaults to the steady clock; tests pass their own.
  explicit TicketKeys(int64_t period_seconds = kRotationSeconds, Clock now = {});

  // Installs the ticket callback on `ctx` (which keeps a pointer to this
  // object: it must outlive the context).
  bool install(SSL_CTX* ctx);

  // How many keys have been made (1 at start, +1 per rotation).
  uint64_t generation() const;

  struct Key {
    std::array<unsigned char, 16> name;
    std::array<unsigned char, 32> aes;   // AES-256-CBC
    std::array<unsigned char, 32> hmac;  // HMAC-SHA256
  };

 private:
  static int callback(SSL* ssl, unsigned char* key_name, unsigned char* iv, EVP_CIPHER_CTX* cipher,
                      EVP_MAC_CTX* mac, int enc);
  int handle(unsigned char* key_name, unsigned char* iv, EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int enc);
  void rotate_locked();  // mutex_ held

  const int64_t period_;
  const Clock now_;
  mutable std::mutex mutex_;  // handshakes on every worker read the keys
  Key current_{}, previous_{};
  bool has_previous_ = false;
  int64_t next_rotation_ = 0;
  uint64_t generation_ = 0;
};

}  // namespace holdfast::tls
