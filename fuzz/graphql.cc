// libFuzzer target: the GraphQL document parser behind the graphql_*
// variables. Any input either fails or gives an operation APISIX knows,
// a name and root fields that are GraphQL names; parsing is deterministic
// and nesting is bounded (a deep input must not exhaust the stack).
#include <cstdint>
#include <string_view>

#include "harness.h"
#include "http/graphql.h"

using fuzz::check;

namespace {
bool is_name(std::string_view s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool start = c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    if (!start && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view doc(reinterpret_cast<const char*>(data), size);
  auto a = holdfast::http::parse_graphql(doc);
  auto b = holdfast::http::parse_graphql(doc);
  check(a.has_value() == b.has_value());
  if (!a) return 0;
  check(a->operation.empty() || a->operation == "query" || a->operation == "mutation" ||
        a->operation == "subscription");
  check(a->name.empty() || is_name(a->name));
  check(a->root_fields.size() == b->root_fields.size());
  for (const auto& f : a->root_fields) check(is_name(f));
  return 0;
}
