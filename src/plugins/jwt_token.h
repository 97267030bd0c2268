// A JSON Web Token split and decoded (RFC 7519 compact JWS), as
// lua-resty-jwt's load_jwt reads one for APISIX's jwt-auth: three
// base64url parts, the first two JSON objects. Nothing is verified here.
#pragma once
#include <boost/json/object.hpp>

#include <string>
#include <string_view>

#include "core/status.h"

namespace holdfast::plugins {

struct JwtToken {
  boost::json::object header, payload;
  std::string alg;                  // header.alg when it is a string
  std::string_view signing_input;   // "<header>.<payload>", a view into the token
  std::string_view signature;       // the third part, still base64url
};

// Tokens longer than this are refused before any decoding.
inline constexpr size_t kMaxJwtBytes = 64 * 1024;

// The reason on failure names the part that is wrong, never its content.
Result<JwtToken> parse_jwt(std::string_view token);

}  // namespace holdfast::plugins
