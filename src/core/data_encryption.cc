#include "core/data_encryption.h"

#include <openssl/evp.h>

#include <boost/json.hpp>
#include <memory>

#include "core/base64.h"

namespace holdfast::data_encryption {
namespace json = boost::json;

namespace {

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

const EVP_CIPHER* cipher_for(std::string_view key) {
  if (key.size() == 16) return EVP_aes_128_cbc();
  if (key.size() == 32) return EVP_aes_256_cbc();
  return nullptr;
}

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

// Valid UTF-8 without control characters other than tab, CR and LF: what
// a key, a password or a PEM block looks like, and what garbage from a
// wrong key almost never looks like.
bool looks_like_text(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) return false;
      ++i;
      continue;
    }
    size_t extra = (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : 0;
    if (extra == 0 || c < 0xc2 || c > 0xf4 || i + extra >= s.size()) return false;
    for (size_t k = 1; k <= extra; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
    i += extra + 1;
  }
  return true;
}

const char* const kPluginFields[][2] = {{"key-auth", "key"}, {"basic-auth", "password"}, {"jwt-auth", "secret"},
                                        {"hmac-auth", "secret_key"}};

bool is_pem(std::string_view s) { return s.starts_with("---"); }

// Applies `fn` to every sensitive string of one resource value; `pem` tells
// whether the field holds a PEM private key.
template <typename Fn>
void for_each_field(json::object& value, std::string_view resource, Fn&& fn) {
  if (auto p = value.find("plugins"); p != value.end() && p->value().is_object()) {
    for (const auto& pf : kPluginFields) {
      auto conf = p->value().as_object().find(pf[0]);
      if (conf == p->value().as_object().end() || !conf->value().is_object()) continue;
      auto f = conf->value().as_object().find(pf[1]);
      if (f != conf->value().as_object().end() && f->value().is_string()) fn(f->value(), false);
    }
  }
  if (resource == "ssls") {
    if (auto k = value.find("key"); k != value.end() && k->value().is_string()) fn(k->value(), true);
    if (auto ks = value.find("keys"); ks != value.end() && ks->value().is_array())
      for (auto& k : ks->value().as_array())
        if (k.is_string()) fn(k, true);
  }
  auto upstream_tls = [&](json::object& up) {
    auto tls = up.find("tls");
    if (tls == up.end() || !tls->value().is_object()) return;
    auto k = tls->value().as_object().find("client_key");
    if (k != tls->value().as_object().end() && k->value().is_string()) fn(k->value(), true);
  };
  if (resource == "upstreams") upstream_tls(value);
  if (resource == "routes" || resource == "services" || resource == "stream_routes")
    if (auto u = value.find("upstream"); u != value.end() && u->value().is_object()) upstream_tls(u->value().as_object());
}

}  // namespace

Result<std::string> encrypt(std::string_view plain, std::string_view key) {
  const EVP_CIPHER* cipher = cipher_for(key);
  if (!cipher) return Error{"a data encryption key must be 16 or 32 bytes"};
  Ctx ctx(EVP_CIPHER_CTX_new());
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), cipher, nullptr, bytes(key), bytes(key)) != 1)
    return Error{"cannot initialise AES"};
  std::string out(plain.size() + 16, '\0');
  int n1 = 0, n2 = 0;
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  if (EVP_EncryptUpdate(ctx.get(), o, &n1, bytes(plain), static_cast<int>(plain.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), o + n1, &n2) != 1)
    return Error{"AES encryption failed"};
  out.resize(static_cast<size_t>(n1 + n2));
  return base64_encode(out);
}

std::optional<std::string> decrypt(std::string_view b64, std::string_view key) {
  const EVP_CIPHER* cipher = cipher_for(key);
  if (!cipher) return std::nullopt;
  auto raw = base64_decode(b64);
  if (!raw || raw->empty() || raw->size() % 16 != 0) return std::nullopt;
  Ctx ctx(EVP_CIPHER_CTX_new());
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), cipher, nullptr, bytes(key), bytes(key)) != 1) return std::nullopt;
  std::string out(raw->size() + 16, '\0');
  int n1 = 0, n2 = 0;
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  if (EVP_DecryptUpdate(ctx.get(), o, &n1, bytes(*raw), static_cast<int>(raw->size())) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), o + n1, &n2) != 1)
    return std::nullopt;
  out.resize(static_cast<size_t>(n1 + n2));
  if (!looks_like_text(out)) return std::nullopt;
  return out;
}

std::optional<std::string> decrypt_any(std::string_view b64, const Keyring& keyring) {
  for (const auto& k : keyring)
    if (auto v = decrypt(b64, k)) return v;
  return std::nullopt;
}

Status encrypt_fields(json::object& value, std::string_view resource, const Keyring& keyring) {
  if (keyring.empty()) return Error{"apisix.data_encryption.keyring is empty"};
  std::string failure;
  for_each_field(value, resource, [&](json::value& field, bool pem) {
    std::string_view s = field.as_string();
    if (pem && !is_pem(s)) return;  // already encrypted (or not a PEM at all)
    auto enc = encrypt(s, keyring.front());
    if (!enc) { failure = enc.error(); return; }
    field = *enc;
  });
  if (!failure.empty()) return Error{failure};
  return {};
}

void decrypt_fields(json::object& value, std::string_view resource, const Keyring& keyring) {
  for_each_field(value, resource, [&](json::value& field, bool pem) {
    std::string_view s = field.as_string();
    if (pem && is_pem(s)) return;  // plaintext PEM (APISIX ssl.lua)
    if (auto plain = decrypt_any(s, keyring)) field = *plain;
  });
}

void decrypt_document(json::object& doc, const Keyring& keyring) {
  for (auto& section : doc) {
    if (!section.value().is_array()) continue;
    for (auto& item : section.value().as_array())
      if (item.is_object()) decrypt_fields(item.as_object(), section.key(), keyring);
  }
}

}  // namespace holdfast::data_encryption
