// Data encryption (APISIX_COMPAT §1.2): AES-CBC with key = IV, base64.
#include "core/data_encryption.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

namespace de = holdfast::data_encryption;
namespace json = boost::json;

namespace {
const de::Keyring kDefault{"qeddd145sfvddff3", "edd1c9f0985e76a2"};
}

TEST(DataEncryption, KnownVector) {
  // printf abc | openssl enc -aes-128-cbc -base64
  //   -K 71656464643134357366766464666633 -iv 71656464643134357366766464666633
  auto enc = de::encrypt("abc", "qeddd145sfvddff3");
  ASSERT_TRUE(enc.ok()) << enc.error();
  EXPECT_EQ(*enc, "YG0RXsU1BHpUpWudCbZ0cw==");
  // The same for the second default key and for a 32-byte key (AES-256,
  // IV = the key's first 16 bytes).
  EXPECT_EQ(*de::encrypt("abc", "edd1c9f0985e76a2"), "am3l9rpugt1LE5bJDqktlg==");
  EXPECT_EQ(*de::encrypt("abc", "0123456789abcdef0123456789abcdef"), "8i/78fXGKXul18RKAZ88kw==");
}

TEST(DataEncryption, RoundTrip16And32ByteKeys) {
  for (std::string key : {"qeddd145sfvddff3", "0123456789abcdef0123456789abcdef"}) {
    for (std::string plain : {"", "x", "exactly16bytes!!", "a longer secret with spaces and ünïcode",
                              "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"}) {
      auto enc = de::encrypt(plain, key);
      ASSERT_TRUE(enc.ok());
      EXPECT_NE(*enc, plain);
      if (plain.empty()) continue;  // "" decrypts to "", indistinguishable from raw for callers
      auto dec = de::decrypt(*enc, key);
      ASSERT_TRUE(dec.has_value()) << key << " " << plain;
      EXPECT_EQ(*dec, plain);
    }
  }
  EXPECT_FALSE(de::encrypt("abc", "short").ok());
}

TEST(DataEncryption, WrongKeyKeepsRawValue) {
  auto enc = *de::encrypt("auth-one", "0000000000000000");
  EXPECT_FALSE(de::decrypt_any(enc, kDefault).has_value());
  json::object consumer;
  consumer["username"] = "jack";
  json::object ka;
  ka["key"] = enc;
  json::object plugins;
  plugins["key-auth"] = ka;
  consumer["plugins"] = plugins;
  de::decrypt_fields(consumer, "consumers", kDefault);
  EXPECT_EQ(consumer.at("plugins").at("key-auth").at("key").as_string(), enc);
  // A plaintext value that is not base64 of whole AES blocks stays as is.
  EXPECT_FALSE(de::decrypt_any("auth-one", kDefault).has_value());
  EXPECT_FALSE(de::decrypt_any("not base64 at all!", kDefault).has_value());
}

TEST(DataEncryption, SecondKeyringEntryDecrypts) {
  auto enc = *de::encrypt("secret-2", "edd1c9f0985e76a2");
  auto dec = de::decrypt_any(enc, kDefault);
  ASSERT_TRUE(dec.has_value());
  EXPECT_EQ(*dec, "secret-2");
}

TEST(DataEncryption, EncryptFieldsAndDecryptDocument) {
  auto doc = json::parse(R"({
    "consumers": [
      {"username": "jack", "plugins": {"key-auth": {"key": "auth-one"}, "basic-auth": {"username": "j", "password": "pw"}}},
      {"id": "jack/credentials/c1", "plugins": {"jwt-auth": {"key": "k", "secret": "s3"}}}
    ],
    "ssls": [{"id": "1", "cert": "CERT", "key": "-----BEGIN PRIVATE KEY-----\nabc\n", "keys": ["-----BEGIN x"], "snis": ["a.com"]}],
    "upstreams": [{"id": "1", "key": "remote_addr", "tls": {"client_cert": "C", "client_key": "-----BEGIN k"}, "nodes": {}}],
    "routes": [{"id": "1", "uri": "/", "plugins": {"key-auth": {"header": "apikey"}}, "upstream": {"tls": {"client_key": "-----BEGIN r"}}}]
  })").as_object();
  json::object original = doc;
  for (auto& section : doc)
    for (auto& item : section.value().as_array())
      ASSERT_TRUE(de::encrypt_fields(item.as_object(), section.key(), kDefault).ok());
  const auto& c0 = doc.at("consumers").as_array()[0].at("plugins");
  EXPECT_NE(c0.at("key-auth").at("key").as_string(), "auth-one");
  EXPECT_EQ(c0.at("key-auth").at("key").as_string(), *de::encrypt("auth-one", "qeddd145sfvddff3"));
  EXPECT_NE(c0.at("basic-auth").at("password").as_string(), "pw");
  EXPECT_EQ(c0.at("basic-auth").at("username").as_string(), "j");
  EXPECT_NE(doc.at("consumers").as_array()[1].at("plugins").at("jwt-auth").at("secret").as_string(), "s3");
  const auto& ssl = doc.at("ssls").as_array()[0];
  EXPECT_FALSE(ssl.at("key").as_string().starts_with("---"));
  EXPECT_FALSE(ssl.at("keys").as_array()[0].as_string().starts_with("---"));
  EXPECT_EQ(ssl.at("cert").as_string(), "CERT");
  const auto& up = doc.at("upstreams").as_array()[0];
  EXPECT_EQ(up.at("key").as_string(), "remote_addr");  // the chash key is not a secret
  EXPECT_FALSE(up.at("tls").at("client_key").as_string().starts_with("---"));
  EXPECT_FALSE(doc.at("routes").as_array()[0].at("upstream").at("tls").at("client_key").as_string().starts_with("---"));

  // Encrypting PEM fields again changes nothing (they no longer start with ---).
  json::object again = doc.at("ssls").as_array()[0].as_object();
  ASSERT_TRUE(de::encrypt_fields(again, "ssls", kDefault).ok());
  EXPECT_EQ(again.at("key"), ssl.at("key"));

  de::decrypt_document(doc, kDefault);
  EXPECT_EQ(json::value(doc), json::value(original));
}

TEST(DataEncryption, PlainPemSslKeyIsLeftAlone) {
  auto doc = json::parse(R"({"ssls": [{"id": "1", "key": "---not base64---"}]})").as_object();
  de::decrypt_document(doc, kDefault);
  EXPECT_EQ(doc.at("ssls").as_array()[0].at("key").as_string(), "---not base64---");
}
