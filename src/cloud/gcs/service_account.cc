#include "cloud/gcs/service_account.h"

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <boost/json.hpp>
#include <cctype>
#include <memory>

#include "cloud/aws/sigv4.h"
#include "core/base64.h"

namespace holdfast::gcs {
namespace json = boost::json;

namespace {

// The file is at most a few KiB; more is not a key file.
constexpr size_t kMaxKeyFile = 64 * 1024;

std::string string_field(const json::object& o, const char* name) {
  if (auto* v = o.if_contains(name); v && v->is_string()) return std::string(v->as_string());
  return {};
}

Result<std::string> rs256(const std::string& pem, const std::string& input) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  if (!bio) return Error{"out of memory"};
  // A null password callback: an encrypted key fails instead of prompting.
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr), EVP_PKEY_free);
  if (!key) return Error{"private_key is not a PEM private key"};
  if (EVP_PKEY_base_id(key.get()) != EVP_PKEY_RSA) return Error{"private_key is not an RSA key"};
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1)
    return Error{"cannot sign with private_key"};
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1)
    return Error{"cannot sign with private_key"};
  sig.resize(len);
  return sig;
}

}  // namespace

Result<ServiceAccountKey> parse_service_account(const std::string& text, const std::string& path) {
  const std::string what = "credentials file " + path;
  if (text.size() > kMaxKeyFile) return Error{what + " is larger than a key file can be"};
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object()) return Error{what + " is not a JSON object"};
  const auto& o = v.as_object();
  const std::string type = string_field(o, "type");
  if (type != "service_account") {
    // Only a short, clean rendering of the type: the file is a secret.
    std::string shown;
    for (char c : type.substr(0, 40))
      if (std::isalnum(static_cast<unsigned char>(c)) || c == '_') shown += c;
    return Error{fmt::format("{}: type is \"{}\", not \"service_account\" (only service-account keys are supported)",
                             what, shown)};
  }
  ServiceAccountKey k;
  k.client_email = string_field(o, "client_email");
  k.private_key = string_field(o, "private_key");
  k.private_key_id = string_field(o, "private_key_id");
  k.token_uri = string_field(o, "token_uri");
  if (k.token_uri.empty()) k.token_uri = kDefaultTokenUri;
  if (k.client_email.empty()) return Error{what + " has no client_email"};
  if (k.private_key.empty()) return Error{what + " has no private_key"};
  // client_email and kid go into the JWT; token_uri is where the assertion is sent.
  for (const std::string* s : {&k.client_email, &k.private_key_id, &k.token_uri})
    for (char c : *s)
      if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f || c == '"' || c == '\\')
        return Error{what + ": client_email, private_key_id or token_uri carries a character it cannot"};
  if (k.token_uri.rfind("https://", 0) != 0 && k.token_uri.rfind("http://", 0) != 0)
    return Error{what + ": token_uri is not an http(s) URL"};
  return k;
}

Result<std::string> jwt_assertion(const ServiceAccountKey& key, int64_t now) {
  json::object header;
  header["alg"] = "RS256";
  header["typ"] = "JWT";
  if (!key.private_key_id.empty()) header["kid"] = key.private_key_id;
  json::object claims;
  claims["iss"] = key.client_email;
  claims["scope"] = kScope;
  claims["aud"] = key.token_uri;
  claims["iat"] = now;
  claims["exp"] = now + 3600;  // the longest Google accepts
  const std::string input =
      base64url_encode(json::serialize(header)) + "." + base64url_encode(json::serialize(claims));
  auto sig = rs256(key.private_key, input);
  if (!sig) return Error{sig.error()};
  return input + "." + base64url_encode(*sig);
}

std::string token_request_body(const std::string& assertion) {
  return "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=" +
         aws::uri_encode(assertion, false);
}

}  // namespace holdfast::gcs
