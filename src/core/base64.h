// Base64 (RFC 4648, standard alphabet with padding): etcd's JSON gateway,
// data encryption and SigV4 payloads use it.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace holdfast {

std::string base64_encode(std::string_view in);
std::optional<std::string> base64_decode(std::string_view in);

}  // namespace holdfast
