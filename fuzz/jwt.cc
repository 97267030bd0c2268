// libFuzzer target: the JSON Web Token parser of jwt-auth (every request
// with a token reaches it before any signature is checked). Any input either
// fails or splits into a signing input and a signature that are exactly the
// token around its last dot, with JSON-object header and payload; parsing is
// deterministic and the header survives re-encoding.
#include <boost/json/serialize.hpp>

#include <cstdint>
#include <string>
#include <string_view>

#include "core/base64.h"
#include "harness.h"
#include "plugins/jwt_token.h"

using fuzz::check;
using fuzz::inside;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view token(reinterpret_cast<const char*>(data), size);
  auto a = holdfast::plugins::parse_jwt(token);
  auto b = holdfast::plugins::parse_jwt(token);
  check(a.ok() == b.ok());
  if (!a.ok()) return 0;
  check(size <= holdfast::plugins::kMaxJwtBytes);
  check(inside(token, a->signing_input) && inside(token, a->signature));
  check(a->signing_input.size() + 1 + a->signature.size() == size);
  check(token[a->signing_input.size()] == '.');
  check(a->signature.find('.') == std::string_view::npos);
  check(a->header == b->header && a->payload == b->payload && a->alg == b->alg);
  const auto* alg = a->header.if_contains("alg");
  check(alg && alg->is_string() ? a->alg == std::string_view(alg->as_string()) : a->alg.empty());
  // The header, re-encoded, parses to the same object.
  std::string again = holdfast::base64url_encode(boost::json::serialize(a->header)) + "." +
                      std::string(token.substr(a->signing_input.find('.') + 1));
  auto c = holdfast::plugins::parse_jwt(again);
  check(c.ok() && c->header == a->header && c->payload == a->payload);
  return 0;
}
