// The certificate expiry metric (src/tls/cert_metrics.h).
#include "tls/cert_metrics.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "test_pki.h"

using namespace holdfast::tls;
using namespace holdfast::tls::test;
namespace json = boost::json;

namespace {

json::object ssl(const std::string& id, json::array snis, const Pki& pki, const Issued& c) {
  json::object o;
  o["id"] = id;
  o["snis"] = std::move(snis);
  o["cert"] = pki.chain_pem(c);
  o["key"] = c.key_pem();
  return o;
}

}  // namespace

TEST(CertMetrics, LabelEscaping) {
  EXPECT_EQ(prometheus_label("a.test"), "a.test");
  EXPECT_EQ(prometheus_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(prometheus_label(std::string("t\tx\r\x7f\x01", 6)), "t_x___");
}

TEST(CertMetrics, OneSamplePerSniOfServingCertificates) {
  Pki pki;
  Issued ec = pki.leaf("EC", {"a.test", "b.test"});
  Issued rsa = pki.leaf("RSA", {"a.test"});
  Issued off = pki.leaf("EC", {"off.test"});
  json::array a;
  json::object both = ssl("x\"1", json::array{"a.test", "b.test"}, pki, ec);
  both["certs"] = json::array{pki.chain_pem(rsa)};
  both["keys"] = json::array{rsa.key_pem()};
  a.push_back(std::move(both));
  json::object disabled = ssl("off", json::array{"off.test"}, pki, off);
  disabled["status"] = 0;
  a.push_back(std::move(disabled));
  auto t = CertTable::build(&a);
  ASSERT_TRUE(t->problems().empty()) << t->problems()[0].reason;
  const std::string m = expiry_prometheus(*t);
  const int64_t ec_end = t->objects()[0]->certificates[0].not_after;
  const int64_t rsa_end = t->objects()[0]->certificates[1].not_after;
  const std::string name = "holdfast_ssl_certificate_expiry_timestamp_seconds";
  EXPECT_NE(m.find("# TYPE " + name + " gauge\n"), std::string::npos);
  for (const char* sni : {"a.test", "b.test"}) {
    EXPECT_NE(m.find(fmt::format("{}{{sni=\"{}\",ssl_id=\"x\\\"1\",type=\"EC\"}} {}\n", name, sni, ec_end)), std::string::npos) << m;
    EXPECT_NE(m.find(fmt::format("{}{{sni=\"{}\",ssl_id=\"x\\\"1\",type=\"RSA\"}} {}\n", name, sni, rsa_end)), std::string::npos) << m;
  }
  EXPECT_EQ(m.find("off.test"), std::string::npos) << "status 0 serves nothing";
  EXPECT_EQ(expiry_prometheus(*CertTable::build(nullptr)), "");
}

TEST(CertMetrics, UtcTime) { EXPECT_EQ(utc_time(1800000000), "2027-01-15T08:00:00Z"); }
