// Request path normalisation to nginx's $uri: percent-decoding, merged
// slashes and resolved dot segments. Done once per request before routing.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace holdfast::http {

// nullopt when the path is invalid (bad escape, NUL, or ".." above root).
std::optional<std::string> normalize_path(std::string_view raw);

}  // namespace holdfast::http
