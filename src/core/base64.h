// Base64 (RFC 4648, standard alphabet with padding): etcd's JSON gateway,
// data encryption and SigV4 payloads use it.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace holdfast {

std::string base64_encode(std::string_view in);
std::optional<std::string> base64_decode(std::string_view in);

// ngx.decode_base64 / ngx.base64.decode_base64url: nginx's decoder, which
// stops at the first '=', accepts missing padding and refuses any other
// character outside the alphabet and a length of 4n+1.
std::optional<std::string> ngx_decode_base64(std::string_view in);
std::optional<std::string> ngx_decode_base64url(std::string_view in);
std::string base64url_encode(std::string_view in);

}  // namespace holdfast
