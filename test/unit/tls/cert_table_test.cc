// The certificate table (src/tls/cert_table.h): compiling `ssls`, APISIX's
// SNI rules, bad objects left out without touching the others, expiry.
#include "tls/cert_table.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "core/data_encryption.h"
#include "test_pki.h"

namespace json = boost::json;
using namespace holdfast::tls;
using holdfast::tls::test::Issued;
using holdfast::tls::test::KeyForm;
using holdfast::tls::test::Pki;

namespace {

// Key generation is the slow part: one PKI and a few leaves for the file.
struct Fixture {
  Pki pki;
  Issued rsa = pki.leaf("RSA", {"rsa.example.com"});
  Issued ec = pki.leaf("EC", {"ec.example.com"});
  Issued wild = pki.leaf("EC", {"*.example.com"});
  Issued other = pki.leaf("EC", {"other.test"});
};
const Fixture& fx() {
  static Fixture f;
  return f;
}

json::object ssl(const std::string& id, json::value snis, const Issued& c, KeyForm form = KeyForm::pkcs8) {
  json::object o;
  o["id"] = id;
  if (snis.is_string()) o["sni"] = snis;
  else o["snis"] = snis;
  o["cert"] = fx().pki.chain_pem(c);
  o["key"] = c.key_pem(form);
  return o;
}

std::shared_ptr<const CertTable> build(const json::array& a, CertTable::Options o = {}) {
  return CertTable::build(&a, o);
}

std::string id_for(const CertTable& t, std::string_view sni) {
  const SslObject* o = t.match(sni);
  return o ? o->id : "";
}

bool has_problem(const CertTable& t, const std::string& id, const std::string& text) {
  for (const auto& p : t.problems())
    if (p.ssl_id == id && p.reason.find(text) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST(CertTable, KeyFormsAndChains) {
  const auto& f = fx();
  json::array a;
  a.push_back(ssl("pkcs1", "rsa.example.com", f.rsa, KeyForm::traditional));
  a.push_back(ssl("sec1", "ec.example.com", f.ec, KeyForm::traditional));
  a.push_back(ssl("pkcs8", "other.test", f.other, KeyForm::pkcs8));
  EXPECT_NE(a[0].as_object()["key"].as_string().find("BEGIN RSA PRIVATE KEY"), json::string::npos);
  EXPECT_NE(a[1].as_object()["key"].as_string().find("BEGIN EC PRIVATE KEY"), json::string::npos);
  EXPECT_NE(a[2].as_object()["key"].as_string().find("BEGIN PRIVATE KEY"), json::string::npos);
  auto t = build(a);
  EXPECT_TRUE(t->problems().empty()) << t->problems()[0].reason;
  ASSERT_EQ(t->objects().size(), 3u);
  EXPECT_EQ(t->find_id("pkcs1")->certificates.at(0).key_type, "RSA");
  EXPECT_EQ(t->find_id("sec1")->certificates.at(0).key_type, "EC");
  // The intermediate after the leaf is kept as the chain.
  const Certificate& c = t->find_id("pkcs8")->certificates.at(0);
  ASSERT_EQ(sk_X509_num(c.chain.get()), 1);
  EXPECT_EQ(X509_cmp(sk_X509_value(c.chain.get(), 0), f.pki.inter.cert.get()), 0);
}

TEST(CertTable, CertsAndKeysArraysAddPairs) {
  const auto& f = fx();
  json::object o = ssl("1", "mixed.example.com", f.ec);
  o["certs"] = json::array{json::string(f.pki.chain_pem(f.rsa))};
  o["keys"] = json::array{json::string(f.rsa.key_pem(KeyForm::traditional))};
  auto t = build(json::array{o});
  ASSERT_TRUE(t->problems().empty()) << t->problems()[0].reason;
  const SslObject* obj = t->match("mixed.example.com");
  ASSERT_NE(obj, nullptr);
  ASSERT_EQ(obj->certificates.size(), 2u);
  EXPECT_EQ(obj->certificates[0].key_type, "EC");
  EXPECT_EQ(obj->certificates[1].key_type, "RSA");
}

TEST(CertTable, SniRules) {
  const auto& f = fx();
  json::array a;
  a.push_back(ssl("exact", "www.example.com", f.ec));
  a.push_back(ssl("wild", "*.example.com", f.wild));
  a.push_back(ssl("upper", json::array{"API.Test.", "*.Sub.Test"}, f.other));
  auto t = build(a);
  ASSERT_TRUE(t->problems().empty());
  // Exact before wildcard.
  EXPECT_EQ(id_for(*t, "www.example.com"), "exact");
  EXPECT_EQ(id_for(*t, "a.example.com"), "wild");
  // A wildcard covers exactly one more label: not the bare domain, not two labels.
  EXPECT_EQ(id_for(*t, "example.com"), "");
  EXPECT_EQ(id_for(*t, "a.b.example.com"), "");
  EXPECT_EQ(id_for(*t, "a.www.example.com"), "");
  // Configured names are lowercased and lose a trailing dot, like client names.
  EXPECT_EQ(id_for(*t, "api.test"), "upper");
  EXPECT_EQ(id_for(*t, "x.sub.test"), "upper");
  EXPECT_EQ(id_for(*t, "unknown.org"), "");
  EXPECT_EQ(id_for(*t, ""), "");
}

TEST(CertTable, StarAloneMatchesEveryName) {
  const auto& f = fx();
  json::array a;
  a.push_back(ssl("wild", "*.example.com", f.wild));
  a.push_back(ssl("any", "*", f.other));
  auto t = build(a);
  ASSERT_TRUE(t->problems().empty()) << t->problems()[0].reason;
  EXPECT_EQ(id_for(*t, "a.example.com"), "wild");
  EXPECT_EQ(id_for(*t, "a.b.example.com"), "any");
  EXPECT_EQ(id_for(*t, "localhost"), "any");
  EXPECT_EQ(id_for(*t, "example.com"), "any");
}

TEST(CertTable, StarPrefixWithoutDot) {
  // host_def allows "*foo.com": any characters but '.' before "foo.com".
  const auto& f = fx();
  auto t = build(json::array{ssl("p", "*foo.com", f.other)});
  ASSERT_TRUE(t->problems().empty());
  EXPECT_EQ(id_for(*t, "foo.com"), "p");
  EXPECT_EQ(id_for(*t, "xyzfoo.com"), "p");
  EXPECT_EQ(id_for(*t, "a.foo.com"), "");
  EXPECT_EQ(id_for(*t, "x.yfoo.com"), "");
}

TEST(CertTable, OnlyEnabledServerObjectsAreMatched) {
  const auto& f = fx();
  json::array a;
  json::object off = ssl("off", "off.example.com", f.ec);
  off["status"] = 0;
  json::object client = ssl("client", "client.example.com", f.ec);
  client["type"] = "client";
  json::object shadow = ssl("shadow", "*.example.com", f.wild);
  shadow["status"] = 0;
  a.push_back(off);
  a.push_back(client);
  a.push_back(shadow);
  auto t = build(a);
  ASSERT_TRUE(t->problems().empty());
  // A name that only status-0 (or client) objects cover has no certificate.
  EXPECT_EQ(id_for(*t, "off.example.com"), "");
  EXPECT_EQ(id_for(*t, "client.example.com"), "");
  EXPECT_EQ(id_for(*t, "x.example.com"), "");
  // Still compiled and found by id (upstream mTLS refers to client objects).
  ASSERT_NE(t->find_id("client"), nullptr);
  EXPECT_FALSE(t->find_id("client")->server);
  EXPECT_TRUE(t->expiries().empty());
  // With an enabled one beside it, the status-0 object changes nothing.
  a.push_back(ssl("on", "off.example.com", f.ec));
  EXPECT_EQ(id_for(*build(a), "off.example.com"), "on");
}

TEST(CertTable, FirstObjectKeepsADuplicateSni) {
  const auto& f = fx();
  auto t = build(json::array{ssl("a", "dup.example.com", f.ec), ssl("b", "dup.example.com", f.rsa)});
  EXPECT_EQ(id_for(*t, "dup.example.com"), "a");
  ASSERT_EQ(t->warnings().size(), 1u);
  EXPECT_EQ(t->warnings()[0].ssl_id, "b");
}

TEST(CertTable, BadObjectsAreLeftOutAlone) {
  const auto& f = fx();
  Issued weak = f.pki.leaf("RSA", {"weak.example.com"}, -3600, 86400, 1024);
  const std::string ec_key = f.ec.key_pem();
  json::array a;
  a.push_back(ssl("good", "good.example.com", f.ec));
  json::object bad_cert = ssl("bad-cert", "bc.example.com", f.ec);
  bad_cert["cert"] = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
  a.push_back(bad_cert);
  json::object bad_key = ssl("bad-key", "bk.example.com", f.ec);
  bad_key["key"] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
  a.push_back(bad_key);
  json::object mismatch = ssl("mismatch", "mm.example.com", f.rsa);
  mismatch["key"] = ec_key;
  a.push_back(mismatch);
  json::object undecryptable = ssl("enc", "enc.example.com", f.ec);
  undecryptable["key"] = *holdfast::data_encryption::encrypt(ec_key, "0123456789abcdef");
  a.push_back(undecryptable);
  json::object counts = ssl("counts", "counts.example.com", f.ec);
  counts["certs"] = json::array{json::string(f.pki.chain_pem(f.rsa))};
  a.push_back(counts);
  json::object bad_pair = ssl("bad-pair", "bp.example.com", f.ec);
  bad_pair["certs"] = json::array{json::string(f.pki.chain_pem(f.rsa))};
  bad_pair["keys"] = json::array{json::string(ec_key)};
  a.push_back(bad_pair);
  a.push_back(ssl("weak", "weak.example.com", weak));
  json::object bad_sni = ssl("bad-sni", "bad sni", f.ec);
  a.push_back(bad_sni);
  a.push_back(ssl("good", "dup-id.example.com", f.ec));  // a second object with the same id
  a.push_back(ssl("last", "last.example.com", f.rsa));

  CertTable::Options opts;
  const holdfast::data_encryption::Keyring ring{"qeddd145sfvddff3"};
  opts.keyring = &ring;
  auto t = build(a, opts);
  EXPECT_EQ(id_for(*t, "good.example.com"), "good");
  EXPECT_EQ(id_for(*t, "last.example.com"), "last");
  EXPECT_EQ(t->objects().size(), 2u);
  EXPECT_TRUE(has_problem(*t, "bad-cert", "cert: failed to parse the certificate"));
  EXPECT_TRUE(has_problem(*t, "bad-key", "key: failed to parse the private key"));
  EXPECT_TRUE(has_problem(*t, "mismatch", "does not match the certificate"));
  EXPECT_TRUE(has_problem(*t, "enc", "no keyring entry decrypts it"));
  EXPECT_TRUE(has_problem(*t, "counts", "mismatched number of certs and keys"));
  EXPECT_TRUE(has_problem(*t, "bad-pair", "keys[0]: the private key does not match the certificate in certs[0]"));
  EXPECT_TRUE(has_problem(*t, "weak", "OpenSSL refuses the certificate"));
  EXPECT_TRUE(has_problem(*t, "bad-sni", "invalid sni"));
  EXPECT_TRUE(has_problem(*t, "good", "duplicate id"));
  EXPECT_EQ(t->problems().size(), 9u);
  for (const auto& o : {"bc", "bk", "mm", "enc", "counts", "bp", "weak"})
    EXPECT_EQ(t->match(std::string(o) + ".example.com"), nullptr) << o;
  // A problem never carries key material.
  const std::string key_body = ec_key.substr(ec_key.find('\n') + 1, 40);
  for (const auto& p : t->problems()) {
    EXPECT_EQ(p.reason.find("PRIVATE KEY-----"), std::string::npos) << p.reason;
    EXPECT_EQ(p.reason.find(key_body), std::string::npos) << p.reason;
  }
}

TEST(CertTable, KeysEncryptedWithTheKeyring) {
  const auto& f = fx();
  json::object o = ssl("1", "enc.example.com", f.ec);
  o["key"] = *holdfast::data_encryption::encrypt(f.ec.key_pem(), "edd1c9f0985e76a2");
  CertTable::Options opts;
  const holdfast::data_encryption::Keyring ring{"qeddd145sfvddff3", "edd1c9f0985e76a2"};
  opts.keyring = &ring;
  auto t = build(json::array{o}, opts);
  EXPECT_TRUE(t->problems().empty());
  EXPECT_EQ(id_for(*t, "enc.example.com"), "1");
  // Without the keyring the same object is left out.
  auto plain = build(json::array{o});
  EXPECT_TRUE(has_problem(*plain, "1", "not PEM"));
}

TEST(CertTable, ExpiryAndExpiredCertificates) {
  const auto& f = fx();
  Issued expired = f.pki.leaf("EC", {"old.example.com"}, -86400 * 10, -86400);
  json::array a;
  a.push_back(ssl("old", "old.example.com", expired));
  a.push_back(ssl("new", json::array{"ec.example.com", "*.ec.example.com"}, f.ec));
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  auto t = build(a);
  // An expired certificate is still served (as nginx does), with a warning.
  EXPECT_EQ(id_for(*t, "old.example.com"), "old");
  bool warned = false;
  for (const auto& w : t->warnings())
    if (w.ssl_id == "old" && w.reason.find("expired at") != std::string::npos) warned = true;
  EXPECT_TRUE(warned);
  auto ex = t->expiries();
  ASSERT_EQ(ex.size(), 2u);
  EXPECT_EQ(ex[0].ssl_id, "old");
  EXPECT_NEAR(static_cast<double>(ex[0].not_after), static_cast<double>(now - 86400), 120);
  EXPECT_EQ(ex[1].ssl_id, "new");
  EXPECT_EQ(ex[1].snis, (std::vector<std::string>{"ec.example.com", "*.ec.example.com"}));
  EXPECT_EQ(ex[1].key_type, "EC");
  EXPECT_NEAR(static_cast<double>(ex[1].not_after), static_cast<double>(now + 86400 * 30), 120);
}

TEST(CertTable, UnchangedObjectsAreReused) {
  const auto& f = fx();
  json::array a;
  a.push_back(ssl("same", "same.example.com", f.ec));
  a.push_back(ssl("changed", "changed.example.com", f.ec));
  json::object bad = ssl("bad", "bad.example.com", f.ec);
  bad["key"] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
  a.push_back(bad);
  auto first = build(a);
  a[1].as_object().erase("sni");
  a[1].as_object()["snis"] = json::array{"changed.example.com", "more.example.com"};
  CertTable::Options opts;
  opts.previous = first.get();
  auto second = build(a, opts);
  EXPECT_EQ(second->find_id("same"), first->find_id("same"));
  EXPECT_NE(second->find_id("changed"), first->find_id("changed"));
  EXPECT_EQ(id_for(*second, "more.example.com"), "changed");
  // An unchanged bad object is still reported.
  EXPECT_TRUE(has_problem(*second, "bad", "failed to parse the private key"));
  // The previous table stays whole for connections that still use it.
  EXPECT_EQ(id_for(*first, "more.example.com"), "");
}

TEST(CertTable, EmptyOrMissingSsls) {
  auto t = CertTable::build(nullptr);
  EXPECT_TRUE(t->objects().empty());
  EXPECT_EQ(t->match("anything"), nullptr);
}

TEST(CertTable, ProtocolsPerObject) {
  const auto& f = fx();
  json::object o = ssl("p", "p.example.com", f.ec);
  o["ssl_protocols"] = json::array{"TLSv1.3"};
  json::object old = ssl("old", "old.example.com", f.rsa);
  old["ssl_protocols"] = json::array{"TLSv1.1", "TLSv1.2"};
  json::object bogus = ssl("bogus", "bogus.example.com", f.ec);
  bogus["ssl_protocols"] = json::array{"SSLv3"};
  auto t = build(json::array{o, old, bogus});
  EXPECT_EQ(t->find_id("p")->protocols, kTls13);
  EXPECT_EQ(t->find_id("old")->protocols, kTls11 | kTls12);
  EXPECT_TRUE(has_problem(*t, "bogus", "ssl_protocols"));
  bool warned = false;
  for (const auto& w : t->warnings())
    if (w.ssl_id == "old" && w.reason.find("TLSv1.1") != std::string::npos) warned = true;
  EXPECT_TRUE(warned);
}

TEST(CertTable, ClientCertificateSettings) {
  json::object with = ssl("m", "ec.example.com", fx().ec);
  json::object client;
  client["ca"] = fx().pki.root.cert_pem();
  client["depth"] = 3;
  client["skip_mtls_uri_regex"] = json::array{"^/public/"};
  with["client"] = client;
  json::object bad_regex = ssl("r", "rsa.example.com", fx().rsa);
  bad_regex["client"] = json::object{{"ca", fx().pki.root.cert_pem()}, {"skip_mtls_uri_regex", json::array{"("}}};
  json::object bad_ca = ssl("c", "other.test", fx().other);
  bad_ca["client"] = json::object{{"ca", "not a certificate"}};
  json::object no_client = ssl("n", "*.example.com", fx().wild);
  auto t = build(json::array{with, bad_regex, bad_ca, no_client});
  const SslObject* m = t->find_id("m");
  ASSERT_TRUE(m && m->client);
  EXPECT_EQ(m->client->depth, 3);
  EXPECT_EQ(m->client->skip_mtls_uri_regex.size(), 1u);
  EXPECT_TRUE(m->client->store);
  EXPECT_EQ(sk_X509_NAME_num(m->client->ca_names.get()), 1);
  EXPECT_TRUE(has_problem(*t, "r", "skip_mtls_uri_regex"));
  EXPECT_TRUE(has_problem(*t, "c", "client.ca"));
  ASSERT_TRUE(t->find_id("n"));
  EXPECT_FALSE(t->find_id("n")->client);
  // depth defaults to 1 as in APISIX.
  json::object dflt = ssl("d", "ec.example.com", fx().ec);
  dflt["client"] = json::object{{"ca", fx().pki.root.cert_pem()}};
  auto t2 = build(json::array{dflt});
  ASSERT_TRUE(t2->find_id("d") && t2->find_id("d")->client);
  EXPECT_EQ(t2->find_id("d")->client->depth, 1);
  EXPECT_TRUE(t2->find_id("d")->client->skip_mtls_uri_regex.empty());
}
