#include "tls/ticket_keys.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <chrono>
#include <cstring>

#include "core/log.h"

namespace holdfast::tls {

namespace {

int ctx_index() {
  static const int idx = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return idx;
}

int64_t steady_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

bool fresh(TicketKeys::Key& k) {
  return RAND_bytes(k.name.data(), k.name.size()) == 1 && RAND_bytes(k.aes.data(), k.aes.size()) == 1 &&
         RAND_bytes(k.hmac.data(), k.hmac.size()) == 1;
}

bool init(const TicketKeys::Key& k, const unsigned char* iv, EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int enc) {
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, const_cast<unsigned char*>(k.hmac.data()), k.hmac.size()),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>("SHA256"), 0), OSSL_PARAM_construct_end()};
  if (EVP_MAC_CTX_set_params(mac, params) != 1) return false;
  return enc ? EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, k.aes.data(), iv) == 1
             : EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, k.aes.data(), iv) == 1;
}

}  // namespace

TicketKeys::TicketKeys(int64_t period_seconds, Clock now)
    : period_(period_seconds > 0 ? period_seconds : kRotationSeconds), now_(now ? std::move(now) : Clock(steady_seconds)) {
  std::lock_guard lock(mutex_);
  if (!fresh(current_)) log::error("tls: cannot make a session-ticket key: no randomness");
  generation_ = 1;
  next_rotation_ = now_() + period_;
}

bool TicketKeys::install(SSL_CTX* ctx) {
  return SSL_CTX_set_ex_data(ctx, ctx_index(), this) == 1 &&
         SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, &TicketKeys::callback) == 1;
}

uint64_t TicketKeys::generation() const {
  std::lock_guard lock(mutex_);
  return generation_;
}

void TicketKeys::rotate_locked() {
  // Rotations missed while no handshake came are made up one by one, so
  // that after two periods the key from before both is gone.
  const int64_t now = now_();
  for (int i = 0; i < 2 && now >= next_rotation_; ++i) {
    Key k;
    if (!fresh(k)) {
      log::error("tls: cannot rotate the session-ticket key: no randomness");
      return;
    }
    previous_ = current_;
    has_previous_ = true;
    current_ = k;
    next_rotation_ += period_;
    generation_++;
  }
  if (now >= next_rotation_) next_rotation_ = now + period_;  // idle for longer: both keys are new
}

int TicketKeys::callback(SSL* ssl, unsigned char* key_name, unsigned char* iv, EVP_CIPHER_CTX* cipher,
                         EVP_MAC_CTX* mac, int enc) {
  auto* self = static_cast<TicketKeys*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index()));
  return self ? self->handle(key_name, iv, cipher, mac, enc) : -1;
}

// OpenSSL's contract: encrypting, 1 (or <0 on failure); decrypting, 0 for
// an unknown key (a full handshake follows), 1 for the current key, 2 for
// the previous one (the session resumes and gets a ticket under the new key).
int TicketKeys::handle(unsigned char* key_name, unsigned char* iv, EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac,
                       int enc) {
  std::lock_guard lock(mutex_);
  rotate_locked();
  if (enc) {
    const int iv_len = EVP_CIPHER_get_iv_length(EVP_aes_256_cbc());
    if (RAND_bytes(iv, iv_len) != 1) return -1;
    std::memcpy(key_name, current_.name.data(), current_.name.size());
    return init(current_, iv, cipher, mac, 1) ? 1 : -1;
  }
  if (std::memcmp(key_name, current_.name.data(), current_.name.size()) == 0)
    return init(current_, iv, cipher, mac, 0) ? 1 : -1;
  if (has_previous_ && std::memcmp(key_name, previous_.name.data(), previous_.name.size()) == 0)
    return init(previous_, iv, cipher, mac, 0) ? 2 : -1;
  return 0;
}

}  // namespace holdfast::tls
