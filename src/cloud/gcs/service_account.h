// A Google service-account JSON key file and the RS256 JWT assertion built
// from it for Google's OAuth2 JWT-bearer grant (RFC 7523). No I/O here: the
// token exchange is credentials.h's. Errors never quote the file.
#pragma once
#include <cstdint>
#include <string>

#include "core/status.h"

namespace holdfast::gcs {

// What every token is asked for: read and write objects, nothing more.
inline constexpr const char* kScope = "https://www.googleapis.com/auth/devstorage.read_write";
inline constexpr const char* kDefaultTokenUri = "https://oauth2.googleapis.com/token";

struct ServiceAccountKey {
  std::string client_email;
  std::string private_key;     // PEM
  std::string private_key_id;  // the JWT's kid, when the file has one
  std::string token_uri;       // kDefaultTokenUri when the file has none
};

// A service-account key file's text. `path` names the file in errors, which
// never quote its contents.
Result<ServiceAccountKey> parse_service_account(const std::string& text, const std::string& path);
// The signed assertion: header {alg RS256, typ JWT[, kid]}, claims iss =
// client_email, scope = kScope, aud = token_uri, iat = now, exp = now + 1 h.
Result<std::string> jwt_assertion(const ServiceAccountKey& key, int64_t now);
// The token request's form body (grant_type jwt-bearer).
std::string token_request_body(const std::string& assertion);

}  // namespace holdfast::gcs
