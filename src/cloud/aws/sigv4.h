// AWS Signature Version 4 (header form): canonical request, string to sign
// and Authorization header, as in AWS's published test suite.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace holdfast::aws {

struct Credentials {
  std::string access_key;
  std::string secret_key;
  std::string session_token;   // temporary credentials only
  int64_t expires_unix = 0;    // 0 = does not expire
  std::string source;          // "config", "environment", "web-identity", ... (for logs)
  bool empty() const { return access_key.empty() || secret_key.empty(); }
};

struct SignInput {
  std::string method;
  std::string path;    // NOT percent-encoded (e.g. "/bucket/my key"); encoded here
  std::string query;   // raw query string as it will be sent (already encoded), without '?'
  std::vector<std::pair<std::string, std::string>> headers;  // must include host
  std::string payload_hash;  // hex sha256 of the body, or "UNSIGNED-PAYLOAD"
};

struct SignOptions {
  std::string region;
  std::string service;
  std::string amz_date;          // YYYYMMDDTHHMMSSZ
  bool normalize_path = true;    // false for S3: keys are taken literally
  bool add_content_sha256 = false;  // S3 wants x-amz-content-sha256
  bool omit_session_token = false;  // a few services want the token added unsigned
};

struct Signed {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signature;
  // Headers to add to the request: x-amz-date, optional x-amz-security-token
  // and x-amz-content-sha256, and Authorization.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string canonical_uri;     // the encoded path to put on the request line
};

Signed sign(const SignInput& in, const Credentials& creds, const SignOptions& opts);

std::string sha256_hex(std::string_view data);
std::string hmac_sha256(std::string_view key, std::string_view data);  // raw bytes
std::string hex(std::string_view bytes);
// RFC 3986 encoding of everything but unreserved characters (and '/' when kept).
std::string uri_encode(std::string_view s, bool keep_slash);
std::string amz_date_now();  // current UTC time as YYYYMMDDTHHMMSSZ

}  // namespace holdfast::aws
