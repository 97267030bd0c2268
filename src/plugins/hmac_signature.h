// The HTTP Signature pieces of hmac-auth (APISIX 3.11+): the parameters of
// an `Authorization: Signature keyId="…",…` header, the string the client
// signed, and the Date header's time. Pure functions, so that the parser can
// be fuzzed and tested without a request.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace holdfast::plugins::hmac {

struct SignatureParams {
  std::optional<std::string> key_id, algorithm, signature;
  std::optional<std::vector<std::string>> headers;  // the `headers` list, in order, empty names dropped
};

// As APISIX's retrieve_hmac_fields: the header must start with "Signature"
// (case as written); the rest is split at every ',' and each piece yields
// its first `name="value"` (name: ASCII letters and digits, value: up to
// the next '"'). keyId, algorithm, signature and headers are kept (a later
// one wins), others ignored. nullopt: no "Signature" prefix.
std::optional<SignatureParams> parse_signature(std::string_view authorization);

// The string the client signs: keyId, then for each name in `headers` the
// line "name: value" (the request's header of that name), or, for
// "@request-target" when no header has that name, "METHOD request_uri"; a
// name without a header adds nothing. Each line ends with "\n".
using HeaderLookup = std::function<std::optional<std::string>(std::string_view)>;
std::string signing_string(const SignatureParams& p, std::string_view method, std::string_view request_uri,
                           const HeaderLookup& header);

// ngx.parse_http_time (nginx's ngx_parse_http_time): RFC 1123
// "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT"
// or asctime "Sun Nov  6 08:49:37 1994"; seconds since the epoch.
std::optional<int64_t> parse_http_time(std::string_view s);

}  // namespace holdfast::plugins::hmac
