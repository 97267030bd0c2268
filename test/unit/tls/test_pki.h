// A private PKI made at test time with OpenSSL's APIs: a root CA, an
// intermediate, and RSA / ECDSA leaves with chosen names and validity, as
// PEM text in the forms SSL objects carry (PKCS#1, SEC1, PKCS#8 keys).
#pragma once
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdint>
#include <ctime>
#include <stdexcept>
#include <string>
#include <vector>

#include "tls/openssl_util.h"

namespace holdfast::tls::test {

enum class KeyForm { pkcs8, traditional };  // traditional: PKCS#1 for RSA, SEC1 for EC

inline PkeyPtr make_key(const std::string& type, int rsa_bits = 2048) {
  EVP_PKEY* k = type == "RSA" ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(rsa_bits))
                              : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (!k) throw std::runtime_error("keygen failed");
  return PkeyPtr(k);
}

inline std::string bio_text(BIO* b) {
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  return std::string(data, static_cast<size_t>(n));
}

inline std::string key_pem(EVP_PKEY* k, KeyForm form = KeyForm::pkcs8) {
  BioPtr b(BIO_new(BIO_s_mem()));
  int ok = form == KeyForm::pkcs8
               ? PEM_write_bio_PKCS8PrivateKey(b.get(), k, nullptr, nullptr, 0, nullptr, nullptr)
               : PEM_write_bio_PrivateKey_traditional(b.get(), k, nullptr, nullptr, 0, nullptr, nullptr);
  if (ok != 1) throw std::runtime_error("key PEM failed");
  return bio_text(b.get());
}

inline std::string cert_pem(X509* x) {
  BioPtr b(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(b.get(), x);
  return bio_text(b.get());
}

struct Issued {
  X509Ptr cert;
  PkeyPtr key;
  std::string cert_pem() const { return test::cert_pem(cert.get()); }
  std::string key_pem(KeyForm f = KeyForm::pkcs8) const { return test::key_pem(key.get(), f); }
};

// Issues a certificate for `key` signed by `issuer` (self-signed when null).
// Validity is [now + from, now + to] seconds; `names` become DNS SANs, the
// first also the CN.
inline Issued issue(PkeyPtr key, const std::vector<std::string>& names, const Issued* issuer, bool ca,
                    long from = -3600, long to = 86400 * 30) {
  static long serial = 1;
  X509Ptr x(X509_new());
  X509_set_version(x.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), from);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), to);
  X509_set_pubkey(x.get(), key.get());
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(names.at(0).c_str()),
                             -1, -1, 0);
  X509_set_issuer_name(x.get(), issuer ? X509_get_subject_name(issuer->cert.get()) : name);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, issuer ? issuer->cert.get() : x.get(), x.get(), nullptr, nullptr, 0);
  auto add = [&](int nid, const std::string& value) {
    X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str());
    if (!e) throw std::runtime_error("extension failed: " + value);
    X509_add_ext(x.get(), e, -1);
    X509_EXTENSION_free(e);
  };
  if (ca) {
    add(NID_basic_constraints, "critical,CA:TRUE");
    add(NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add(NID_basic_constraints, "CA:FALSE");
    std::string san;
    for (const auto& n : names) san += (san.empty() ? "DNS:" : ",DNS:") + n;
    add(NID_subject_alt_name, san);
  }
  add(NID_subject_key_identifier, "hash");
  EVP_PKEY* signer = issuer ? issuer->key.get() : key.get();
  if (X509_sign(x.get(), signer, EVP_sha256()) == 0) throw std::runtime_error("sign failed");
  return Issued{std::move(x), std::move(key)};
}

// One root, one intermediate under it; leaves are issued by the intermediate.
struct Pki {
  Issued root = issue(make_key("EC"), {"Holdfast Test Root"}, nullptr, true);
  Issued inter = issue(make_key("EC"), {"Holdfast Test Intermediate"}, &root, true);

  Issued leaf(const std::string& type, const std::vector<std::string>& names, long from = -3600,
              long to = 86400 * 30, int rsa_bits = 2048) const {
    return issue(make_key(type, rsa_bits), names, &inter, false, from, to);
  }
  // The PEM an SSL object carries in `cert`: leaf then intermediate.
  std::string chain_pem(const Issued& leaf) const { return leaf.cert_pem() + inter.cert_pem(); }
};

}  // namespace holdfast::tls::test
