// Just enough of a GraphQL parser for APISIX's graphql_* variables
// (apisix/core/ctx.lua): the whole executable document is checked against
// the GraphQL grammar (October 2021 spec, executable definitions only), and
// its first definition gives the operation type, the name and the root
// field names. Nesting is bounded, so hostile input cannot exhaust the stack.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace holdfast::http {

struct GraphqlSummary {
  std::string operation;                 // query (also the `{...}` shorthand), mutation, subscription; "" for a fragment
  std::string name;                      // "" when anonymous
  std::vector<std::string> root_fields;  // field names (not aliases) and fragment-spread names
};

// nullopt when `doc` is not a GraphQL executable document (or is empty).
std::optional<GraphqlSummary> parse_graphql(std::string_view doc);

}  // namespace holdfast::http
