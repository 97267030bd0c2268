// Server names as the SSL router sees them (APISIX_COMPAT "SSL"): the raw
// server_name extension of a ClientHello, read before OpenSSL has parsed it
// (the client-hello callback runs first), and the one normalisation that
// both configured SNIs and client SNIs go through.
#pragma once
#include <string>
#include <string_view>

namespace holdfast::tls {

struct ServerNameExt {
  enum class Kind {
    name,       // one host_name entry: `name` holds it, normalised
    malformed,  // the handshake must abort (decode_error)
  };
  Kind kind = Kind::malformed;
  std::string name;
};

// Parses the body of a server_name extension (RFC 6066 §3) as OpenSSL does:
// a 2-byte list length that covers the rest exactly, holding exactly one
// entry of type host_name with a 1-255 byte name. Stricter than OpenSSL in
// one way: the name must be printable ASCII without spaces (0x21-0x7e), so
// that a server name never carries control characters into logs, variables
// or headers. The name comes back normalised (normalize_sni).
ServerNameExt parse_server_name_ext(std::string_view body);

// APISIX's normalisation (apisix/ssl.lua server_name, radixtree_sni.lua
// ssl_filter): ASCII lowercase, then one trailing '.' removed.
std::string normalize_sni(std::string_view name);

}  // namespace holdfast::tls
