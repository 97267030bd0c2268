#include "tls/cert_table.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <boost/json.hpp>
#include <fmt/format.h>

#include <ctime>
#include <optional>

#include "core/log.h"
#include "core/user_regex.h"
#include "core/status.h"
#include "tls/sni.h"

namespace holdfast::tls {
namespace json = boost::json;

std::string openssl_error(const char* fallback) {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (!e) return fallback;
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

Protocols protocol_bit(std::string_view name) {
  if (name == "TLSv1.1") return kTls11;
  if (name == "TLSv1.2") return kTls12;
  if (name == "TLSv1.3") return kTls13;
  return 0;
}

Protocols protocol_mask(const std::vector<std::string>& names) {
  Protocols m = 0;
  for (const auto& n : names) m |= protocol_bit(n);
  return m;
}

namespace {

std::string item_id(const json::value& v, size_t index) {
  if (v.is_object()) {
    if (const auto* id = v.as_object().if_contains("id")) {
      if (id->is_string()) return std::string(id->as_string());
      if (id->is_int64()) return std::to_string(id->as_int64());
    }
  }
  // Standalone files may omit ids; APISIX names such items arr_<n>.
  return "arr_" + std::to_string(index + 1);
}

std::array<unsigned char, 32> digest_of(const json::value& v) {
  const std::string text = json::serialize(v);
  std::array<unsigned char, 32> d{};
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), d.data(), &len, EVP_sha256(), nullptr);
  return d;
}

// APISIX's host_def pattern for sni/snis: ^\*$|^\*?[0-9a-zA-Z-._\[\]:]+$
bool valid_sni_pattern(std::string_view s) {
  if (s == "*") return true;
  if (!s.empty() && s[0] == '*') s.remove_prefix(1);
  if (s.empty()) return false;
  for (char c : s) {
    const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
                    c == '.' || c == '_' || c == '[' || c == ']' || c == ':';
    if (!ok) return false;
  }
  return true;
}

int64_t asn1_unix(const ASN1_TIME* t) {
  struct tm tm {};
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

// Fails instead of prompting on the terminal for an encrypted PEM key.
int no_password(char*, int, int, void*) { return -1; }

// Reads one (chain, key) pair. `cert_name`/`key_name` name the fields in
// messages ("cert"/"key", "certs[0]"/"keys[0]").
Result<Certificate> parse_pair(const std::string& cert_pem, std::string key_pem, const std::string& cert_name,
                               const std::string& key_name, const data_encryption::Keyring* keyring,
                               SSL_CTX* check_ctx) {
  ERR_clear_error();
  Certificate c;
  {
    BioPtr bio(BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())));
    if (!bio) return Error{cert_name + ": " + openssl_error("out of memory")};
    c.leaf.reset(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!c.leaf) return Error{fmt::format("{}: failed to parse the certificate: {}", cert_name, openssl_error("no PEM data"))};
    c.chain.reset(sk_X509_new_null());
    // Every further certificate in the PEM is an intermediate, sent as the chain.
    for (;;) {
      X509Ptr next(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
      if (!next) break;
      if (!sk_X509_push(c.chain.get(), next.get())) return Error{cert_name + ": out of memory"};
      next.release();
    }
    // The loop ends at the end of the text (no start line); anything else is
    // a broken block.
    const unsigned long e = ERR_peek_last_error();
    if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))
      return Error{fmt::format("{}: failed to parse an intermediate certificate: {}", cert_name, openssl_error())};
    ERR_clear_error();
  }
  // A key is stored AES-encrypted (base64) unless it is PEM text (APISIX:
  // "---" prefix, apisix/ssl.lua aes_decrypt_pkey).
  if (!key_pem.starts_with("---")) {
    std::optional<std::string> plain;
    if (keyring) plain = data_encryption::decrypt_any(key_pem, *keyring);
    if (!plain || !plain->starts_with("---"))
      return Error{key_name + ": the key is not PEM and no keyring entry decrypts it"};
    key_pem = std::move(*plain);
  }
  {
    BioPtr bio(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
    if (!bio) return Error{key_name + ": " + openssl_error("out of memory")};
    // PKCS#1 (RSA PRIVATE KEY), SEC1 (EC PRIVATE KEY) and PKCS#8 (PRIVATE KEY).
    c.key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr));
    if (!c.key) return Error{fmt::format("{}: failed to parse the private key: {}", key_name, openssl_error("no PEM data"))};
  }
  if (X509_check_private_key(c.leaf.get(), c.key.get()) != 1) {
    ERR_clear_error();
    return Error{fmt::format("{}: the private key does not match the certificate in {}", key_name, cert_name)};
  }
  // What the handshake will do with it (SSL_use_cert_and_key), checked now:
  // OpenSSL's security level refuses e.g. RSA keys under 2048 bits.
  if (check_ctx && SSL_CTX_use_cert_and_key(check_ctx, c.leaf.get(), c.key.get(), c.chain.get(), 1) != 1)
    return Error{fmt::format("{}: OpenSSL refuses the certificate: {}", cert_name, openssl_error())};
  const char* type = EVP_PKEY_get0_type_name(c.key.get());
  c.key_type = type ? type : "unknown";
  c.not_before = asn1_unix(X509_get0_notBefore(c.leaf.get()));
  c.not_after = asn1_unix(X509_get0_notAfter(c.leaf.get()));
  return c;
}

// `client` (APISIX's SSL schema: ca required, depth >= 0 default 1,
// skip_mtls_uri_regex a non-empty array of regexes).
Result<std::shared_ptr<const ClientVerify>> parse_client(const json::value& v) {
  if (!v.is_object()) return Error{"client: expected an object"};
  const auto& o = v.as_object();
  for (const auto& kv : o)
    if (kv.key() != "ca" && kv.key() != "depth" && kv.key() != "skip_mtls_uri_regex")
      return Error{fmt::format("client: unknown property \"{}\"", log::json_escape(kv.key()))};
  auto c = std::make_shared<ClientVerify>();
  const auto* ca = o.if_contains("ca");
  if (!ca || !ca->is_string() || ca->as_string().empty()) return Error{"client.ca: expected a PEM certificate"};
  ERR_clear_error();
  c->store.reset(X509_STORE_new());
  c->ca_names.reset(sk_X509_NAME_new_null());
  if (!c->store || !c->ca_names) return Error{"client.ca: out of memory"};
  BioPtr bio(BIO_new_mem_buf(ca->as_string().data(), static_cast<int>(ca->as_string().size())));
  if (!bio) return Error{"client.ca: out of memory"};
  // Every certificate in the PEM is a trusted CA (nginx's ssl_client_certificate).
  for (;;) {
    X509Ptr x(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!x) break;
    if (X509_STORE_add_cert(c->store.get(), x.get()) != 1)
      return Error{"client.ca: " + openssl_error("cannot add the certificate")};
    X509_NAME* name = X509_NAME_dup(X509_get_subject_name(x.get()));
    if (!name || !sk_X509_NAME_push(c->ca_names.get(), name)) {
      X509_NAME_free(name);
      return Error{"client.ca: out of memory"};
    }
  }
  const unsigned long e = ERR_peek_last_error();
  if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))
    return Error{"client.ca: failed to parse the certificate: " + openssl_error()};
  ERR_clear_error();
  if (sk_X509_NAME_num(c->ca_names.get()) == 0) return Error{"client.ca: failed to parse the certificate: no PEM data"};
  if (const auto* d = o.if_contains("depth")) {
    if (!d->is_int64() || d->as_int64() < 0 || d->as_int64() > 100) return Error{"client.depth: expected an integer >= 0"};
    c->depth = static_cast<int>(d->as_int64());
  }
  if (const auto* r = o.if_contains("skip_mtls_uri_regex")) {
    if (!r->is_array() || r->as_array().empty())
      return Error{"client.skip_mtls_uri_regex: expected a non-empty array of regexes"};
    for (const auto& pat : r->as_array()) {
      if (!pat.is_string()) return Error{"client.skip_mtls_uri_regex: expected a non-empty array of regexes"};
      // As every user regex: PCRE2 (core/user_regex.h), as APISIX.
      auto re = UserRegex::compile(std::string(pat.as_string()));
      if (!re) return Error{"client.skip_mtls_uri_regex: invalid regex '" + std::string(pat.as_string()) + "': " + re.error()};
      c->skip_mtls_uri_regex.push_back(std::move(*re));
    }
  }
  return std::shared_ptr<const ClientVerify>(std::move(c));
}

Result<std::shared_ptr<SslObject>> compile_one(const json::value& v, const std::string& id,
                                                const data_encryption::Keyring* keyring, SSL_CTX* check_ctx) {
  if (!v.is_object()) return Error{"expected an object"};
  const auto& o = v.as_object();
  auto obj = std::make_shared<SslObject>();
  obj->id = id;
  if (const auto* t = o.if_contains("type")) {
    if (!t->is_string() || (t->as_string() != "server" && t->as_string() != "client"))
      return Error{"type: expected \"server\" or \"client\""};
    obj->server = t->as_string() == "server";
  }
  if (const auto* s = o.if_contains("status")) {
    if (!s->is_int64() || (s->as_int64() != 0 && s->as_int64() != 1)) return Error{"status: expected 0 or 1"};
    obj->enabled = s->as_int64() == 1;
  }
  const auto* sni = o.if_contains("sni");
  const auto* snis = o.if_contains("snis");
  if (sni && snis) return Error{"sni and snis cannot both be set"};
  std::vector<std::string_view> raw_snis;
  if (sni) {
    if (!sni->is_string()) return Error{"sni: expected a string"};
    raw_snis.push_back(sni->as_string());
  } else if (snis) {
    if (!snis->is_array() || snis->as_array().empty()) return Error{"snis: expected a non-empty array"};
    for (const auto& s : snis->as_array()) {
      if (!s.is_string()) return Error{"snis: expected strings"};
      raw_snis.push_back(s.as_string());
    }
  }
  for (auto s : raw_snis) {
    std::string n = normalize_sni(s);
    if (!valid_sni_pattern(s) || n.empty())
      return Error{fmt::format("invalid sni \"{}\"", log::json_escape(s))};
    obj->snis.push_back(std::move(n));
  }
  if (obj->server && obj->snis.empty()) return Error{"a server SSL needs sni or snis"};

  auto text = [&](const char* key) -> Result<std::string> {
    const auto* f = o.if_contains(key);
    if (!f) return Error{fmt::format("{} is required", key)};
    if (!f->is_string()) return Error{fmt::format("{}: expected a string", key)};
    return std::string(f->as_string());
  };
  auto cert = text("cert");
  if (!cert) return Error{cert.error()};
  auto key = text("key");
  if (!key) return Error{key.error()};
  std::vector<std::string> certs, keys;
  for (auto [name, dst] : {std::pair{"certs", &certs}, std::pair{"keys", &keys}}) {
    const auto* a = o.if_contains(name);
    if (!a || a->is_null()) continue;
    if (!a->is_array()) return Error{fmt::format("{}: expected an array of strings", name)};
    for (const auto& s : a->as_array()) {
      if (!s.is_string()) return Error{fmt::format("{}: expected an array of strings", name)};
      dst->emplace_back(s.as_string());
    }
  }
  if (certs.size() != keys.size()) return Error{"mismatched number of certs and keys"};

  if (const auto* p = o.if_contains("ssl_protocols"); p && !p->is_null()) {
    if (!p->is_array() || p->as_array().size() > 3) return Error{"ssl_protocols: expected at most 3 of TLSv1.1, TLSv1.2, TLSv1.3"};
    for (const auto& name : p->as_array()) {
      const Protocols bit = name.is_string() ? protocol_bit(name.as_string()) : 0;
      if (!bit) return Error{"ssl_protocols: expected at most 3 of TLSv1.1, TLSv1.2, TLSv1.3"};
      obj->protocols |= bit;
    }
    if (obj->protocols & kTls11)
      obj->notes.push_back("ssl_protocols: TLSv1.1 lowers OpenSSL's security level to 0 for this object's handshakes");
  }

  if (const auto* cl = o.if_contains("client"); cl && !cl->is_null()) {
    auto c = parse_client(*cl);
    if (!c) return Error{c.error()};
    obj->client = std::move(*c);
  }

  auto first = parse_pair(*cert, std::move(*key), "cert", "key", keyring, check_ctx);
  if (!first) return Error{first.error()};
  obj->certificates.push_back(std::move(*first));
  for (size_t i = 0; i < certs.size(); ++i) {
    auto c = parse_pair(certs[i], std::move(keys[i]), fmt::format("certs[{}]", i), fmt::format("keys[{}]", i), keyring,
                        check_ctx);
    if (!c) return Error{c.error()};
    for (const auto& prev : obj->certificates)
      if (prev.key_type == c->key_type)
        obj->notes.push_back(fmt::format("certs[{}]: a second {} certificate; OpenSSL keeps the last one of each key "
                                         "type", i, c->key_type));
    obj->certificates.push_back(std::move(*c));
  }
  return obj;
}

}  // namespace

Result<Certificate> parse_certificate(const std::string& cert_pem, const std::string& key_pem,
                                      const data_encryption::Keyring* keyring) {
  return parse_pair(cert_pem, key_pem, "tls.client_cert", "tls.client_key", keyring, nullptr);
}

std::shared_ptr<const CertTable> CertTable::build(const json::array* ssls, const Options& opts) {
  auto t = std::make_shared<CertTable>();
  const int64_t now = opts.now_unix ? opts.now_unix : static_cast<int64_t>(std::time(nullptr));
  // A scratch context that runs OpenSSL's own checks on every new pair
  // (created only when something needs compiling).
  SslCtxPtr check_ctx;
  if (ssls) {
    for (size_t i = 0; i < ssls->size(); ++i) {
      const json::value& v = (*ssls)[i];
      const std::string id = item_id(v, i);
      if (t->by_id_.count(id) || t->failed_.count(id)) {
        t->problems_.push_back({id, "duplicate id (the first one is used)"});
        log::error("ssl {}: skipped: duplicate id (the first one is used)", id);
        continue;
      }
      const auto digest = digest_of(v);
      if (opts.previous) {
        if (auto it = opts.previous->by_id_.find(id); it != opts.previous->by_id_.end()) {
          const auto& prev = opts.previous->objects_[it->second];
          if (prev->digest == digest) {
            t->by_id_.emplace(id, t->objects_.size());
            t->objects_.push_back(prev);
            for (const auto& n : prev->notes) t->warnings_.push_back({id, n});
            continue;
          }
        }
        if (auto it = opts.previous->failed_.find(id); it != opts.previous->failed_.end() && it->second.first == digest) {
          t->problems_.push_back({id, it->second.second});
          t->failed_.emplace(id, it->second);
          continue;
        }
      }
      if (!check_ctx) check_ctx.reset(SSL_CTX_new(TLS_server_method()));
      auto obj = compile_one(v, id, opts.keyring, check_ctx.get());
      if (!obj) {
        t->problems_.push_back({id, obj.error()});
        t->failed_.emplace(id, std::pair{digest, obj.error()});
        log::error("ssl {}: skipped: {}", id, obj.error());
        continue;
      }
      (*obj)->digest = digest;
      for (const auto& n : (*obj)->notes) {
        t->warnings_.push_back({id, n});
        log::warn("ssl {}: {}", id, n);
      }
      t->by_id_.emplace(id, t->objects_.size());
      t->objects_.push_back(std::move(*obj));
    }
  }
  ERR_clear_error();

  // The SNI index: server objects with status 1 only; the first object in
  // document order keeps a name that several claim.
  for (const auto& sp : t->objects_) {
    const SslObject& o = *sp;
    if (!o.server || !o.enabled) continue;
    for (const auto& name : o.snis) {
      const SslObject* holder = nullptr;
      if (name == "*") {
        if (t->any_) holder = t->any_;
        else t->any_ = &o;
      } else {
        Index& idx = name[0] == '*' ? t->wildcard_ : t->exact_;
        auto [it, inserted] = idx.emplace(name[0] == '*' ? name.substr(1) : name, &o);
        if (!inserted) holder = it->second;
      }
      if (holder && holder != &o)
        t->warnings_.push_back({o.id, fmt::format("sni {} is served by ssl {}, which comes first", name, holder->id)});
    }
    for (const auto& c : o.certificates) {
      if (c.not_after && c.not_after < now)
        t->warnings_.push_back({o.id, fmt::format("the {} certificate expired at {}", c.key_type, utc_time(c.not_after))});
      else if (c.not_before > now)
        t->warnings_.push_back({o.id, fmt::format("the {} certificate is not valid before {}", c.key_type, utc_time(c.not_before))});
    }
  }
  return t;
}

const SslObject* CertTable::match(std::string_view sni) const {
  if (sni.empty()) return nullptr;
  if (auto it = exact_.find(sni); it != exact_.end()) return it->second;
  if (!wildcard_.empty()) {
    // A pattern "*<suffix>" covers "<x><suffix>" where x has no '.': try
    // the suffixes that start at or before the first '.', longest first.
    const size_t first_dot = sni.find('.');
    const size_t last = first_dot == std::string_view::npos ? sni.size() - 1 : first_dot;
    for (size_t i = 0; i <= last; ++i)
      if (auto it = wildcard_.find(sni.substr(i)); it != wildcard_.end()) return it->second;
  }
  return any_;
}

const SslObject* CertTable::find_id(std::string_view id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : objects_[it->second].get();
}

std::vector<CertTable::Expiry> CertTable::expiries() const {
  std::vector<Expiry> out;
  for (const auto& o : objects_) {
    if (!o->server || !o->enabled) continue;
    for (const auto& c : o->certificates) out.push_back({o->id, o->snis, c.key_type, c.not_after});
  }
  return out;
}

std::string utc_time(int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace holdfast::tls
