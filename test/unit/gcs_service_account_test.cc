// The service-account key file and the JWT assertion built from it: the
// signature checked with the key's public half, the claims Google's token
// endpoint reads, and errors that never quote the file.
#include "cloud/gcs/service_account.h"
#include "cloud/access_token.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <boost/json.hpp>
#include <memory>

#include "core/base64.h"

using namespace holdfast;
using namespace holdfast::gcs;
namespace json = boost::json;

namespace {

struct KeyPair {
  std::string private_pem, public_pem;
};

KeyPair make_rsa() {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> k(EVP_RSA_gen(2048), EVP_PKEY_free);
  KeyPair out;
  auto pem = [](auto write) {
    std::unique_ptr<BIO, decltype(&BIO_free)> b(BIO_new(BIO_s_mem()), BIO_free);
    write(b.get());
    char* p = nullptr;
    long n = BIO_get_mem_data(b.get(), &p);
    return std::string(p, static_cast<size_t>(n));
  };
  out.private_pem = pem([&](BIO* b) { PEM_write_bio_PKCS8PrivateKey(b, k.get(), nullptr, nullptr, 0, nullptr, nullptr); });
  out.public_pem = pem([&](BIO* b) { PEM_write_bio_PUBKEY(b, k.get()); });
  return out;
}

bool verify_rs256(const std::string& public_pem, const std::string& input, const std::string& sig) {
  std::unique_ptr<BIO, decltype(&BIO_free)> b(BIO_new_mem_buf(public_pem.data(), static_cast<int>(public_pem.size())),
                                              BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> k(PEM_read_bio_PUBKEY(b.get(), nullptr, nullptr, nullptr),
                                                        EVP_PKEY_free);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  return k && EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, k.get()) == 1 &&
         EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                          reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
}

std::string key_file(const std::string& pem, const char* token_uri = "http://127.0.0.1:9/token") {
  json::object o;
  o["type"] = "service_account";
  o["project_id"] = "holdfast-test";
  o["private_key_id"] = "0123abcd";
  o["private_key"] = pem;
  o["client_email"] = "holdfast@holdfast-test.iam.gserviceaccount.com";
  if (token_uri) o["token_uri"] = token_uri;
  return json::serialize(o);
}

}  // namespace

TEST(GcsServiceAccount, JwtAssertionIsSignedAndNamesTheAccountScopeAndAudience) {
  KeyPair kp = make_rsa();
  auto key = parse_service_account(key_file(kp.private_pem), "/k.json");
  ASSERT_TRUE(key.ok()) << key.error();
  auto jwt = jwt_assertion(*key, 1700000000);
  ASSERT_TRUE(jwt.ok()) << jwt.error();
  const auto dot1 = jwt->find('.'), dot2 = jwt->rfind('.');
  ASSERT_NE(dot1, dot2);
  auto header = json::parse(*ngx_decode_base64url(jwt->substr(0, dot1))).as_object();
  auto claims = json::parse(*ngx_decode_base64url(jwt->substr(dot1 + 1, dot2 - dot1 - 1))).as_object();
  auto sig = ngx_decode_base64url(jwt->substr(dot2 + 1));
  ASSERT_TRUE(sig.has_value());
  EXPECT_TRUE(verify_rs256(kp.public_pem, jwt->substr(0, dot2), *sig));
  EXPECT_FALSE(verify_rs256(make_rsa().public_pem, jwt->substr(0, dot2), *sig)) << "another key does not verify it";
  EXPECT_EQ(header["alg"], "RS256");
  EXPECT_EQ(header["typ"], "JWT");
  EXPECT_EQ(header["kid"], "0123abcd");
  EXPECT_EQ(claims["iss"], "holdfast@holdfast-test.iam.gserviceaccount.com");
  EXPECT_EQ(claims["scope"], "https://www.googleapis.com/auth/devstorage.read_write");
  EXPECT_EQ(claims["aud"], "http://127.0.0.1:9/token");
  EXPECT_EQ(claims["iat"].as_int64(), 1700000000);
  EXPECT_EQ(claims["exp"].as_int64(), 1700003600);
  // base64url without padding, as RFC 7515 wants.
  EXPECT_EQ(jwt->find_first_of("+/="), std::string::npos);
  EXPECT_EQ(token_request_body("a.b-c_d"),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b-c_d");
}

TEST(GcsServiceAccount, TokenUriDefaultsToGoogles) {
  auto key = parse_service_account(key_file(make_rsa().private_pem, nullptr), "/k.json");
  ASSERT_TRUE(key.ok()) << key.error();
  EXPECT_EQ(key->token_uri, "https://oauth2.googleapis.com/token");
}

TEST(GcsServiceAccount, BadFilesAreRefusedWithoutQuotingThem) {
  const std::string secret = "-----BEGIN PRIVATE KEY-----\nTOPSECRETKEYMATERIAL\n-----END PRIVATE KEY-----\n";
  json::object wrong_type = json::parse(key_file(secret)).as_object();
  wrong_type["type"] = "authorized_user";
  json::object no_email = json::parse(key_file(secret)).as_object();
  no_email.erase("client_email");
  json::object evil_uri = json::parse(key_file(secret)).as_object();
  evil_uri["token_uri"] = "http://x/\r\nX-Evil: 1";
  json::object ftp_uri = json::parse(key_file(secret)).as_object();
  ftp_uri["token_uri"] = "ftp://x/token";
  for (const std::string& text : {std::string("not json TOPSECRETKEYMATERIAL"), json::serialize(wrong_type),
                                  json::serialize(no_email), json::serialize(evil_uri), json::serialize(ftp_uri)}) {
    auto k = parse_service_account(text, "/etc/gcs/key.json");
    ASSERT_FALSE(k.ok()) << text;
    EXPECT_NE(k.error().find("/etc/gcs/key.json"), std::string::npos) << k.error();
    EXPECT_EQ(k.error().find("TOPSECRET"), std::string::npos) << k.error();
    EXPECT_EQ(k.error().find("X-Evil"), std::string::npos) << k.error();
  }
  // A key that is not a PEM RSA private key parses as a file but cannot sign.
  auto k = parse_service_account(key_file(secret), "/k.json");
  ASSERT_TRUE(k.ok()) << k.error();
  auto jwt = jwt_assertion(*k, 1);
  ASSERT_FALSE(jwt.ok());
  EXPECT_EQ(jwt.error().find("TOPSECRET"), std::string::npos) << jwt.error();
}

// Google's token endpoint and the metadata server answer alike.
TEST(GcsServiceAccount, TokenAnswers) {
  auto t = cloud::parse_token_answer(R"({"access_token":"ya29.c.abc","expires_in":3599,"token_type":"Bearer"})", 100);
  ASSERT_TRUE(t.ok()) << t.error();
  EXPECT_EQ(t->token, "ya29.c.abc");
  EXPECT_EQ(t->expires_unix, 3699);
  EXPECT_EQ(cloud::token_endpoint_error(R"({"error":"invalid_grant","error_description":"Invalid JWT Signature."})"),
            "invalid_grant");
}
