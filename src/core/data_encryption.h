// APISIX data encryption (APISIX_COMPAT §1.2): sensitive fields are stored in
// etcd as base64(AES-CBC(value)) with key = IV = a keyring entry. The Admin
// API encrypts with the first entry; readers try every entry and keep the
// raw value when none works, as APISIX does.
#pragma once
#include <boost/json/object.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace holdfast::data_encryption {

using Keyring = std::vector<std::string>;

// AES-128-CBC for a 16-byte key, AES-256-CBC for a 32-byte key (the IV is
// the key's first 16 bytes: OpenSSL reads only the cipher's IV length from
// the key buffer that lua-resty-aes passes as IV). PKCS#7, base64 output.
Result<std::string> encrypt(std::string_view plain, std::string_view key);
// Decrypts with one key; nullopt when the input is not base64, the padding
// is wrong, or the output is not text (a wrong key yields bytes that almost
// never pass both checks).
std::optional<std::string> decrypt(std::string_view b64, std::string_view key);
// Tries every key in order.
std::optional<std::string> decrypt_any(std::string_view b64, const Keyring& keyring);

// Encrypts the sensitive fields of one resource value in place. `resource`
// is the etcd directory name ("consumers", "ssls", "upstreams", ...):
// key-auth `key`, basic-auth `password`, jwt-auth `secret`, hmac-auth
// `secret_key` in `plugins` of
// any resource; SSL `key` and `keys[]` of "ssls"; `tls.client_key` of an
// upstream ("upstreams", or the embedded `upstream` of routes, services and
// stream_routes). PEM values (SSL keys, client keys) are encrypted only while
// they still start with "---", so encrypting twice is harmless for them.
// Fails only if the first keyring entry cannot be used.
Status encrypt_fields(boost::json::object& value, std::string_view resource, const Keyring& keyring);

// The reverse of encrypt_fields for one resource value; a field that no key
// decrypts keeps its raw value, an SSL key starting with "---" is left alone.
void decrypt_fields(boost::json::object& value, std::string_view resource, const Keyring& keyring);

// decrypt_fields over every resource of a standalone-shaped document
// ({"routes":[...],"consumers":[...],"ssls":[...],...}).
void decrypt_document(boost::json::object& doc, const Keyring& keyring);

}  // namespace holdfast::data_encryption
