// Request path normalisation to nginx's $uri: percent-decoding, merged
// slashes and resolved dot segments. Done once per request before routing.
// And the way back: the encoders APISIX applies before a decoded path goes
// out again in an upstream request line.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace holdfast::http {

// nullopt when the path is invalid (bad escape, NUL, or ".." above root).
std::optional<std::string> normalize_path(std::string_view raw);

// APISIX's match_uri_encoded_slash: the path to route on when `raw` (the
// request's path, still encoded) has a %2F. Only when decoding `raw` plainly
// gives exactly `uri` ($uri: nothing merged, resolved or stripped) is it
// safe to keep the slash encoded; then the result is `uri` with those
// slashes written "%2F" (uppercase, whatever the client sent). Otherwise
// nullopt: route on `uri`.
std::optional<std::string> match_uri_keep_encoded_slash(std::string_view raw, std::string_view uri);

// A set of byte values as nginx writes its escape tables: bit c & 31 of
// word c >> 5.
using ByteSet = std::array<uint32_t, 8>;
// Percent-encodes (uppercase hex) every byte of `in` that is in `set`; the
// input comes back unchanged, without a copy, when nothing is in the set.
std::string percent_escape(std::string in, const ByteSet& set);

// APISIX's core.utils.uri_safe_encode, i.e. nginx's ngx_escape_uri with
// NGX_ESCAPE_URI: percent-encodes controls, space, `"#%<>?\^`{|}`, DEL and
// every byte >= 0x80; '/' and the other RFC 3986 delimiters stay.
std::string uri_safe_encode(std::string_view uri);

// APISIX's core.utils.escape_uri_control_chars: percent-encodes only
// 0x00-0x1F and 0x7F, so that a query keeps its ?, = and & delimiters.
std::string escape_uri_control_chars(std::string_view uri);

}  // namespace holdfast::http
