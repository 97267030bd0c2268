// hmac-auth (priority 2530, auth): the APISIX 3.11+ HTTP Signature scheme
// (apisix/plugins/hmac-auth.lua). The client signs its keyId and chosen
// headers with the consumer's secret_key and sends
// `Authorization: Signature keyId="…",algorithm="hmac-sha256",headers="@request-target date",signature="<base64>"`;
// the consumer is found by keyId, the Date header must be within
// clock_skew, and with validate_request_body the Digest header must be the
// SHA-256 of the body (read whole first, up to max_req_body_size).
#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdlib>
#include <ctime>

#include "core/base64.h"
#include "core/log.h"
#include "plugins/auth.h"
#include "plugins/hmac_signature.h"

namespace holdfast::plugins {
namespace {

const std::string kName = "hmac-auth";
constexpr uint64_t kDefaultMaxBody = 64ull << 20;  // APISIX's max_req_body_size default

struct Algorithm {
  std::string_view name;
  const EVP_MD* (*md)();
};
const Algorithm kAlgorithms[] = {{"hmac-sha1", &EVP_sha1}, {"hmac-sha256", &EVP_sha256}, {"hmac-sha512", &EVP_sha512}};

// A consumer's secret_key (already decrypted and resolved), compiled once
// per snapshot.
struct SecretKey final : Credential {
  std::string value;
};

std::string hmac_digest(const EVP_MD* md, std::string_view key, std::string_view msg) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(md, key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(msg.data()),
            msg.size(), mac, &len))
    return {};
  return std::string(reinterpret_cast<const char*>(mac), len);
}

std::string sha256_digest_header(std::string_view body) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(body.data(), body.size(), d, &len, EVP_sha256(), nullptr);
  return "SHA-256=" + base64_encode(std::string_view(reinterpret_cast<const char*>(d), len));
}

class HmacAuth final : public Plugin {
 public:
  std::vector<const Algorithm*> allowed;
  int64_t clock_skew = 300;
  std::vector<std::string> signed_headers{"date"};
  bool validate_request_body = false;
  uint64_t max_req_body_size = kDefaultMaxBody;
  bool hide_credentials = false;
  std::string realm = "hmac";
  std::string anonymous_consumer;

  Action reject(RequestCtx& ctx, int status, std::string_view message) const {
    ctx.respond(status, json_message(message));
    if (status == 401) ctx.add_reply_header("WWW-Authenticate", fmt::format("hmac realm=\"{}\"", realm));
    return Action::respond;
  }

  // Only a request whose signature already holds, and that has a Digest
  // to check, has its body read (up to max_req_body_size): as in APISIX,
  // which reads it after the signature, a client without a valid key cannot
  // make the node buffer a large body.
  uint64_t wants_request_body(const RequestCtx& ctx) const override {
    if (!validate_request_body || !ctx.req || !ctx.request_header("Digest")) return 0;
    auto auth = ctx.request_header("Authorization");
    if (!auth) return 0;
    auto params = hmac::parse_signature(*auth);
    std::string why;
    return params && signed_by(ctx, *params, why) ? max_req_body_size : 0;
  }

  // APISIX's validate() up to the body: the consumer whose key signed the
  // request, or why not (a log line; never a secret).
  const Consumer* signed_by(const RequestCtx& ctx, const hmac::SignatureParams& p, std::string& why) const {
    if (!p.key_id || !p.signature) {
      why = "keyId or signature missing";
      return nullptr;
    }
    if (!p.algorithm) {
      why = "algorithm missing";
      return nullptr;
    }
    const CredentialHit* hit = ctx.consumers ? ctx.consumers->find(kName, *p.key_id) : nullptr;
    if (!hit || !hit->credential) {
      why = "Invalid key_id";
      return nullptr;
    }
    const Algorithm* alg = nullptr;
    for (const Algorithm* a : allowed)
      if (a->name == *p.algorithm) alg = a;
    if (!alg) {
      why = "Invalid algorithm";
      return nullptr;
    }
    auto date = ctx.request_header("Date");
    if (!date) {
      why = "Date header missing. failed to validate clock skew";
      return nullptr;
    }
    auto t = hmac::parse_http_time(*date);
    if (!t) {
      why = "Invalid GMT format time";
      return nullptr;
    }
    if (std::llabs(static_cast<long long>(std::time(nullptr)) - *t) > clock_skew) {
      why = "Clock skew exceeded";
      return nullptr;
    }
    for (const auto& h : signed_headers) {
      bool signed_it = false;
      if (p.headers)
        for (const auto& s : *p.headers) signed_it = signed_it || s == h;
      if (!signed_it) {
        why = fmt::format("expected header \"{}\" missing in signing", h);
        return nullptr;
      }
    }
    const auto& secret = static_cast<const SecretKey&>(*hit->credential).value;
    const std::string target = ctx.req ? std::string(ctx.req->target) : std::string("/");
    const std::string signing = hmac::signing_string(
        p, ctx.req ? ctx.req->method : std::string_view("GET"), target,
        [&](std::string_view name) { return ctx.request_header(name); });
    auto given = ngx_decode_base64(*p.signature);
    if (!given || !secret_equal(*given, hmac_digest(alg->md(), secret, signing))) {
      why = "Invalid signature";
      return nullptr;
    }
    return hit->consumer;
  }

  // APISIX's validate(): signed_by, then the body's digest. `status` is set
  // for a failure that is not a 401 (413).
  const Consumer* validate(RequestCtx& ctx, const hmac::SignatureParams& p, std::string& why, int& status) const {
    const Consumer* consumer = signed_by(ctx, p, why);
    if (!consumer) return nullptr;
    if (validate_request_body) {
      auto digest = ctx.request_header("Digest");
      if (!digest) {
        why = "Invalid digest";
        return nullptr;
      }
      std::string_view body;
      if (ctx.body) {
        body = *ctx.body;
      } else if (ctx.req && ((ctx.req->body == http::BodyKind::length && ctx.req->content_length > 0) ||
                             ctx.req->body == http::BodyKind::chunked)) {
        // The proxy did not read it: larger than max_req_body_size.
        why = ctx.req->body == http::BodyKind::length
                  ? fmt::format("request size {} is greater than the maximum size {} allowed",
                                ctx.req->content_length, max_req_body_size)
                  : fmt::format("request size is greater than the maximum size {} allowed", max_req_body_size);
        log::error("hmac-auth: failed to read request body: {}", why);
        status = 413;
        return nullptr;
      }
      if (sha256_digest_header(body) != *digest) {
        why = "Invalid digest";
        return nullptr;
      }
    }
    return consumer;
  }

  Action rewrite(RequestCtx& ctx) const override {
    const Consumer* consumer = nullptr;
    std::string failure;
    auto auth = ctx.request_header("Authorization");
    std::optional<hmac::SignatureParams> params;
    if (auth) params = hmac::parse_signature(*auth);
    if (!params) {
      // The reason is part of the answer here, as in APISIX.
      failure = fmt::format("client request can't be validated: {}",
                            auth ? "Authorization header does not start with 'Signature'"
                                 : "missing Authorization header");
      log::warn("hmac-auth: {}", failure);
    } else {
      std::string why;
      int status = 0;
      consumer = validate(ctx, *params, why, status);
      if (status) return reject(ctx, status, why);
      if (!consumer) {
        log::warn("hmac-auth: client request can't be validated: {}", why);
        failure = "client request can't be validated";
      }
    }
    if (const char* message = authenticate_or_anonymous(ctx, consumer, failure.c_str(), anonymous_consumer, kName))
      return reject(ctx, 401, message);
    if (hide_credentials) ctx.remove_request_header("Authorization");
    return Action::next;
  }
};

// APISIX's schema leaves other fields open: they are warned about and ignored.
const FieldRules kFields{.implemented = {"allowed_algorithms", "clock_skew", "signed_headers", "validate_request_body",
                                          "max_req_body_size", "hide_credentials", "realm", "anonymous_consumer"}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<HmacAuth>();
  Checker c(conf, kName);
  if (const json::array* a = c.array("allowed_algorithms", false, 1)) {
    for (size_t i = 0; i < a->size() && !c.failed(); ++i) {
      const json::value& v = (*a)[i];
      const Algorithm* found = nullptr;
      for (const auto& alg : kAlgorithms)
        if (v.is_string() && v.as_string() == alg.name) found = &alg;
      if (!found)
        c.fail(fmt::format("property \"allowed_algorithms\" validation failed: failed to validate item {}: {}", i + 1,
                           v.is_string() ? std::string("matches none of the enum values")
                                         : "wrong type: expected string, got " + model::type_name(v)));
      else
        p->allowed.push_back(found);
    }
  } else if (!c.failed()) {
    for (const auto& alg : kAlgorithms) p->allowed.push_back(&alg);
  }
  p->clock_skew = c.integer("clock_skew", false, 1).value_or(300);
  if (const json::array* a = c.array("signed_headers")) {
    p->signed_headers.clear();
    for (size_t i = 0; i < a->size() && !c.failed(); ++i) {
      const json::value& v = (*a)[i];
      std::string err;
      if (!v.is_string())
        err = "wrong type: expected string, got " + model::type_name(v);
      else if (v.as_string().empty())
        err = "string too short, expected at least 1, got 0";
      else if (v.as_string().size() > 50)
        err = fmt::format("string too long, expected at most 50, got {}", v.as_string().size());
      if (!err.empty())
        c.fail(fmt::format("property \"signed_headers\" validation failed: failed to validate item {}: {}", i + 1, err));
      else
        p->signed_headers.emplace_back(v.as_string());
    }
  }
  p->validate_request_body = c.boolean("validate_request_body").value_or(false);
  p->max_req_body_size = static_cast<uint64_t>(c.integer("max_req_body_size", false, 1).value_or(kDefaultMaxBody));
  p->hide_credentials = c.boolean("hide_credentials").value_or(false);
  p->realm = check_realm(c, "hmac");
  p->anonymous_consumer = c.str("anonymous_consumer", false, 1).value_or("");
  return done(c, p);
}

// The consumer schema: both fields, 1-256 characters, required (checked
// after the properties, as APISIX). No message quotes the secret.
Status check_consumer(const json::object& conf) {
  Checker c(conf, kName);
  c.str("key_id", false, 1, 256);
  c.str("secret_key", false, 1, 256);
  if (!c.failed() && !c.has("key_id")) c.fail("property \"key_id\" is required");
  if (!c.failed() && !c.has("secret_key")) c.fail("property \"secret_key\" is required");
  if (c.failed()) return Error{c.error()};
  return {};
}

Result<std::shared_ptr<const Credential>> compile_credential(const json::object& conf) {
  if (auto st = check_consumer(conf); !st) return Error{st.error()};
  auto k = std::make_shared<SecretKey>();
  k->value = std::string(conf.at("secret_key").as_string());
  return std::shared_ptr<const Credential>(std::move(k));
}

}  // namespace

// APISIX's consumer_schema: open, as the route schema is.
const FieldRules kConsumerFields{.implemented = {"key_id", "secret_key"}};

extern const PluginDef kHmacAuth{"hmac-auth", 2530, true, &create, &check_consumer, nullptr, &kFields, nullptr,
                                 "key_id", &compile_credential, &kConsumerFields};

}  // namespace holdfast::plugins
