// jwt-auth (priority 2510, auth): finds the consumer by the `key` claim of
// a JSON Web Token taken from a header, the query string or a cookie, and
// verifies the token with that consumer's secret or public key (APISIX 3.x,
// apisix/plugins/jwt-auth.lua and jwt-auth/parser.lua).
#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <limits>

#include "core/base64.h"
#include "core/log.h"
#include "plugins/auth.h"
#include "plugins/jwt_token.h"

namespace holdfast::plugins {
namespace {

const std::string kName = "jwt-auth";

enum class Kind : uint8_t { hmac, rsa, pss, ecdsa, eddsa };

struct Algorithm {
  const char* name;
  Kind kind;
  const EVP_MD* (*md)();
  size_t raw_signature = 0;  // ECDSA r||s size, PSS size APISIX asserts (0: any)
};

const EVP_MD* no_md() { return nullptr; }

const Algorithm kAlgorithms[] = {
    {"HS256", Kind::hmac, &EVP_sha256}, {"HS384", Kind::hmac, &EVP_sha384}, {"HS512", Kind::hmac, &EVP_sha512},
    {"RS256", Kind::rsa, &EVP_sha256},  {"RS384", Kind::rsa, &EVP_sha384},  {"RS512", Kind::rsa, &EVP_sha512},
    {"ES256", Kind::ecdsa, &EVP_sha256, 64}, {"ES384", Kind::ecdsa, &EVP_sha384, 96},
    {"ES512", Kind::ecdsa, &EVP_sha512, 132},
    {"PS256", Kind::pss, &EVP_sha256, 256}, {"PS384", Kind::pss, &EVP_sha384, 256},
    {"PS512", Kind::pss, &EVP_sha512, 256},
    {"EdDSA", Kind::eddsa, &no_md},
};

const Algorithm* find_algorithm(std::string_view name) {
  for (const auto& a : kAlgorithms)
    if (name == a.name) return &a;
  return nullptr;
}

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

// A consumer's jwt-auth config, compiled once per snapshot: the secret
// already base64-decoded, the public key already parsed (an EVP_PKEY is
// only read by verifications, which OpenSSL 3 allows from every worker).
struct JwtKey final : Credential {
  const Algorithm* algorithm = nullptr;
  std::string secret;
  std::unique_ptr<EVP_PKEY, PkeyFree> public_key;
  int64_t lifetime_grace_period = 0;
};

std::unique_ptr<EVP_PKEY, PkeyFree> parse_public_key(const std::string& text) {
  auto read = [&](auto&& fn) {
    BIO* bio = BIO_new_mem_buf(text.data(), static_cast<int>(text.size()));
    EVP_PKEY* k = bio ? fn(bio) : nullptr;
    BIO_free(bio);
    return std::unique_ptr<EVP_PKEY, PkeyFree>(k);
  };
  // A PEM public key (SubjectPublicKeyInfo), else a PEM private key (its
  // public half), as resty.openssl's pkey.new takes either.
  auto k = read([](BIO* b) { return PEM_read_bio_PUBKEY(b, nullptr, nullptr, nullptr); });
  if (!k) k = read([](BIO* b) { return PEM_read_bio_PrivateKey(b, nullptr, nullptr, nullptr); });
  // A failed read leaves errors in this thread's OpenSSL queue, where later
  // TLS code on the same thread would find them.
  ERR_clear_error();
  return k;
}

// ECDSA signatures in a JWT are r||s; OpenSSL verifies DER.
std::string ecdsa_raw_to_der(std::string_view raw) {
  ECDSA_SIG* sig = ECDSA_SIG_new();
  const size_t half = raw.size() / 2;
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), static_cast<int>(half), nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data() + half), static_cast<int>(half), nullptr);
  std::string out;
  if (sig && r && s && ECDSA_SIG_set0(sig, r, s) == 1) {
    r = s = nullptr;  // owned by sig now
    unsigned char* der = nullptr;
    int len = i2d_ECDSA_SIG(sig, &der);
    if (len > 0) out.assign(reinterpret_cast<char*>(der), static_cast<size_t>(len));
    OPENSSL_free(der);
  }
  BN_free(r);
  BN_free(s);
  ECDSA_SIG_free(sig);
  return out;
}

bool verify(const JwtKey& key, std::string_view input, std::string_view signature);

// Verifies, then empties this worker's OpenSSL error queue: a failed verify
// leaves errors there, and SSL_get_error on the worker's TLS connections
// reads that queue.
bool verify_signature(const JwtKey& key, std::string_view input, std::string_view signature) {
  const bool ok = verify(key, input, signature);
  if (!ok) ERR_clear_error();
  return ok;
}

bool verify(const JwtKey& key, std::string_view input, std::string_view signature) {
  const Algorithm& alg = *key.algorithm;
  if (alg.kind == Kind::hmac) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!HMAC(alg.md(), key.secret.data(), static_cast<int>(key.secret.size()),
              reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len))
      return false;
    return secret_equal(std::string_view(reinterpret_cast<const char*>(mac), len), signature);
  }
  if (!key.public_key) return false;
  if (alg.raw_signature && signature.size() != alg.raw_signature) return false;
  std::string der;
  if (alg.kind == Kind::ecdsa) {
    der = ecdsa_raw_to_der(signature);
    if (der.empty()) return false;
    signature = der;
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (!ctx) return false;
  EVP_PKEY_CTX* pctx = nullptr;
  bool ok = EVP_DigestVerifyInit(ctx, &pctx, alg.md(), nullptr, key.public_key.get()) == 1;
  if (ok && alg.kind == Kind::pss) ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1;
  if (ok)
    ok = EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                          reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

// HTTP date, as ngx.http_time prints the time in the claim errors.
std::string http_time(double t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

// parser.lua verify_claims: without claims_to_verify, `exp` and `nbf` are
// checked when present; with it, the listed ones must be present too.
std::optional<std::string> check_claims(const json::object& payload, const std::vector<std::string>& claims,
                                        int64_t grace) {
  static const std::vector<std::string> kDefault = {"nbf", "exp"};
  const bool required = !claims.empty();
  const double now = static_cast<double>(std::time(nullptr));
  for (const auto& name : required ? claims : kDefault) {
    const json::value* v = payload.if_contains(name);
    if (!v) {
      if (required) return fmt::format("claim {} is missing", name);
      continue;
    }
    if (!v->is_number()) return fmt::format("claim {} is not a number", name);
    const double t = v->to_number<double>();
    if (name == "nbf" && !(t < now + static_cast<double>(grace)))
      return fmt::format("'nbf' claim not valid until {}", http_time(t));
    if (name == "exp" && !(t > now - static_cast<double>(grace)))
      return fmt::format("'exp' claim expired at {}", http_time(t));
  }
  return std::nullopt;
}

// jwt-auth's remove_specified_cookie: the `name=value` pairs the patterns
// `[a-zA-Z0-9-_]*` = `[a-zA-Z0-9-._]*` find, without `key`'s, joined by "; "
// (other characters of the header are dropped, as there).
std::string remove_cookie(std::string_view src, std::string_view key) {
  auto key_char = [](char c) { return isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'; };
  auto val_char = [](char c) { return isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_'; };
  std::string out;
  size_t pos = 0;
  while (pos < src.size()) {
    size_t k = pos;
    while (k < src.size() && key_char(src[k])) ++k;
    if (k >= src.size() || src[k] != '=') {
      ++pos;
      continue;
    }
    size_t v = k + 1;
    while (v < src.size() && val_char(src[v])) ++v;
    if (src.substr(pos, k - pos) != key) {
      if (!out.empty()) out += "; ";
      out.append(src.substr(pos, v - pos));
    }
    pos = v;
  }
  return out;
}

class JwtAuth final : public Plugin {
 public:
  std::string header = "authorization";
  std::string query = "jwt";
  std::string cookie = "jwt";
  bool hide_credentials = false;
  std::string key_claim_name = "key";
  std::string realm = "jwt";
  std::string anonymous_consumer;
  std::vector<std::string> claims_to_verify;

  Action reject(RequestCtx& ctx, const char* message) const {
    ctx.respond(401, json_message(message));
    ctx.add_reply_header("WWW-Authenticate", fmt::format("Bearer realm=\"{}\"", realm));
    return Action::respond;
  }

  // fetch_jwt_token: the header (without a "Bearer " prefix), else the query
  // argument, else the cookie; hide_credentials removes it from where it was
  // found, before it is checked.
  std::optional<std::string> fetch(RequestCtx& ctx) const {
    if (auto token = ctx.request_header(header)) {
      if (hide_credentials) ctx.remove_request_header(header);
      if (token->starts_with("Bearer ") || token->starts_with("bearer ")) return token->substr(7);
      return token;
    }
    bool several = false;
    if (auto token = query_arg(ctx.query(), query, several)) {
      if (hide_credentials) ctx.set_query(without_query_arg(ctx.query(), query));
      // Repeated, it is a Lua table in APISIX: not a token.
      return several ? std::string() : *token;
    }
    auto token = ctx.var("cookie_" + cookie);
    if (!token) return std::nullopt;
    if (hide_credentials) ctx.set_request_header("Cookie", remove_cookie(ctx.request_header("Cookie").value_or(""), cookie));
    return token;
  }

  const Consumer* find(RequestCtx& ctx, const char*& failure) const {
    auto token = fetch(ctx);
    if (!token) {
      failure = "Missing JWT token in request";
      return nullptr;
    }
    auto jwt = parse_jwt(*token);
    if (!jwt) {
      log::warn("jwt-auth: JWT token invalid: {}", jwt.error());
      failure = "JWT token invalid";
      return nullptr;
    }
    const json::value* user_key = jwt->payload.if_contains(key_claim_name);
    if (!user_key || (user_key->is_bool() && !user_key->as_bool())) {
      failure = "missing user key in JWT token";
      return nullptr;
    }
    const CredentialHit* hit =
        user_key->is_string() && ctx.consumers ? ctx.consumers->find(kName, std::string(user_key->as_string())) : nullptr;
    if (!hit || !hit->credential) {
      log::warn("jwt-auth: failed to find consumer: invalid user key");
      failure = "Invalid user key in JWT token";
      return nullptr;
    }
    failure = "failed to verify jwt";
    const auto& key = static_cast<const JwtKey&>(*hit->credential);
    if (jwt->alg != key.algorithm->name) {
      log::warn("jwt-auth: failed to verify jwt: algorithm mismatch, expected {}", key.algorithm->name);
      return nullptr;
    }
    // An asymmetric verify costs more than the rest of the request, and
    // even an HMAC (OpenSSL 3 looks the algorithm up on every call) costs
    // more than a lookup by the token: each worker remembers the tokens it
    // verified.
    thread_local VerifiedTokens verified(kVerifiedTokensMax, kVerifiedTokensBytes);
    if (!verified.contains(*token, hit->credential, static_cast<double>(std::time(nullptr)))) {
      auto signature = ngx_decode_base64url(jwt->signature);
      if (!signature || !verify_signature(key, jwt->signing_input, *signature)) {
        log::warn("jwt-auth: failed to verify jwt: signature mismatch");
        return nullptr;
      }
      const json::value* exp = jwt->payload.if_contains("exp");
      const double expires = exp && exp->is_number()
                                 ? exp->to_number<double>() + static_cast<double>(key.lifetime_grace_period)
                                 : std::numeric_limits<double>::infinity();
      verified.insert(*token, hit->credential, expires);
    }
    if (auto err = check_claims(jwt->payload, claims_to_verify, key.lifetime_grace_period)) {
      log::error("jwt-auth: failed to verify jwt: {}", *err);
      return nullptr;
    }
    return hit->consumer;
  }

  Action rewrite(RequestCtx& ctx) const override {
    const char* failure = nullptr;
    const Consumer* consumer = find(ctx, failure);
    if (const char* message = authenticate_or_anonymous(ctx, consumer, failure, anonymous_consumer, kName))
      return reject(ctx, message);
    return Action::next;
  }
};

// APISIX's schema leaves other fields open: they are warned about and ignored.
const FieldRules kFields{.implemented = {"header", "query", "cookie", "hide_credentials", "key_claim_name",
                                          "store_in_ctx", "anonymous_consumer", "realm", "claims_to_verify"}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<JwtAuth>();
  Checker c(conf, kName);
  p->header = c.str("header").value_or("authorization");
  p->query = c.str("query").value_or("jwt");
  p->cookie = c.str("cookie").value_or("jwt");
  p->hide_credentials = c.boolean("hide_credentials").value_or(false);
  p->key_claim_name = c.str("key_claim_name", false, 1).value_or("key");
  c.boolean("store_in_ctx");
  p->realm = check_realm(c, "jwt");
  p->anonymous_consumer = c.str("anonymous_consumer", false, 1).value_or("");
  if (const json::array* a = c.array("claims_to_verify")) {
    for (size_t i = 0; i < a->size() && !c.failed(); ++i) {
      const json::value& v = (*a)[i];
      const std::string_view name = v.is_string() ? std::string_view(v.as_string()) : std::string_view();
      if (!v.is_string() || (name != "exp" && name != "nbf")) {
        c.fail(fmt::format("property \"claims_to_verify\" validation failed: failed to validate item {}: {}", i + 1,
                           v.is_string() ? std::string("matches none of the enum values")
                                         : "wrong type: expected string, got " + model::type_name(v)));
      } else if (std::find(p->claims_to_verify.begin(), p->claims_to_verify.end(), name) !=
                 p->claims_to_verify.end()) {
        c.fail(fmt::format("property \"claims_to_verify\" validation failed: expected unique items but items {} and {} are equal",
                           i, i + 1));
      } else {
        p->claims_to_verify.emplace_back(name);
      }
    }
  }
  return done(c, p);
}

// The consumer schema and check_schema's checks after it, in APISIX's
// order. No message quotes the secret.
Status check_consumer(const json::object& conf) {
  Checker c(conf, kName);
  c.str("key", false, 1);
  const auto secret = c.str("secret", false, 1);
  const auto alg_name = c.one_of("algorithm",
                                 {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512",
                                  "PS256", "PS384", "PS512", "EdDSA"},
                                 "HS256");
  c.integer("exp", false, 1);
  const bool base64_secret = c.boolean("base64_secret").value_or(false);
  c.integer("lifetime_grace_period", false, 0);
  if (c.failed()) return Error{c.error()};
  const bool hs = alg_name->starts_with("HS");
  const json::value* pk = conf.if_contains("public_key");
  const bool pk_ok = pk && pk->is_string() && !pk->as_string().empty();
  if (conf.contains("algorithm") && !hs && !pk_ok)
    return Error{"failed to validate dependent schema for \"algorithm\": value should match only one schema, but matches none"};
  if (!conf.contains("key")) return Error{"property \"key\" is required"};
  if (hs && !secret) return Error{"property \"secret\" is required when using HS based algorithms"};
  if (base64_secret && secret && !ngx_decode_base64(*secret))
    return Error{"base64_secret required but the secret is not in base64 format"};
  if (!hs && !pk_ok) return Error{"missing valid public key"};
  return {};
}

Result<std::shared_ptr<const Credential>> compile_credential(const json::object& conf) {
  if (auto st = check_consumer(conf); !st) return Error{st.error()};
  auto k = std::make_shared<JwtKey>();
  const json::value* alg = conf.if_contains("algorithm");
  k->algorithm = find_algorithm(alg ? std::string_view(alg->as_string()) : std::string_view("HS256"));
  if (const json::value* g = conf.if_contains("lifetime_grace_period")) k->lifetime_grace_period = g->to_number<int64_t>();
  if (k->algorithm->kind == Kind::hmac) {
    k->secret = std::string(conf.at("secret").as_string());
    if (const json::value* b = conf.if_contains("base64_secret"); b && b->as_bool())
      k->secret = *ngx_decode_base64(k->secret);
  } else {
    k->public_key = parse_public_key(std::string(conf.at("public_key").as_string()));
    if (!k->public_key) return Error{"public_key: not a PEM public key"};
    // One verification set up here, on the control thread, exports the key
    // to its provider once, so that workers only read the shared key.
    if (EVP_MD_CTX* ctx = EVP_MD_CTX_new()) {
      EVP_DigestVerifyInit(ctx, nullptr, k->algorithm->md(), nullptr, k->public_key.get());
      EVP_MD_CTX_free(ctx);
    }
    ERR_clear_error();
  }
  return std::shared_ptr<const Credential>(std::move(k));
}

}  // namespace

// APISIX's consumer_schema: open, as the route schema is.
const FieldRules kConsumerFields{.implemented = {"key", "secret", "public_key", "algorithm", "exp", "base64_secret",
                                                "lifetime_grace_period"}};

extern const PluginDef kJwtAuth{"jwt-auth", 2510, true, &create, &check_consumer, nullptr, &kFields, nullptr, "key",
                                &compile_credential, &kConsumerFields};

}  // namespace holdfast::plugins
