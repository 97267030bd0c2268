// Azure Storage Shared Key authorization for the Blob service (versions
// 2009-09-19 and later): the string to sign as Microsoft documents it
// ("Authorize with Shared Key") and the Authorization header made from it.
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace holdfast::azure {

struct SharedKeyInput {
  std::string method;
  // The account that owns the resource, and the request path exactly as it
  // is sent (already percent-encoded), e.g. "/container/blob" or, on an
  // emulator, "/devstoreaccount1/container/blob".
  std::string account;
  std::string encoded_path;
  // Query parameters, decoded (the canonical form sorts and joins them).
  std::vector<std::pair<std::string, std::string>> query;
  // Every header that will be sent; names in any case. Content-Length is
  // the body's size ("0" and absent both sign as empty).
  std::vector<std::pair<std::string, std::string>> headers;
};

std::string string_to_sign(const SharedKeyInput& in);
// "SharedKey <account>:<base64 HMAC-SHA256 of the string to sign>" with the
// decoded account key.
std::string authorization(const std::string& account, std::string_view decoded_key, std::string_view string_to_sign);
// The current time as an x-ms-date value (RFC 1123, GMT).
std::string rfc1123_now();

}  // namespace holdfast::azure
