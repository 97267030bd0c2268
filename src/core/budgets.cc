#include "core/budgets.h"

#include <fmt/format.h>

#include <boost/json/error.hpp>
#include <boost/json/parse.hpp>
#include <new>

namespace holdfast::budgets {
namespace json = boost::json;

Result<json::value> parse_json(std::string_view text, const Document& b) {
  if (text.size() > b.max_bytes)
    return Error{fmt::format("document of {} bytes exceeds the limit of {} bytes", text.size(), b.max_bytes)};
  json::parse_options opt;
  opt.max_depth = b.max_depth;
  boost::system::error_code ec;
  try {
    json::value v = json::parse(text, ec, {}, opt);
    if (ec == json::error::too_deep)
      return Error{fmt::format("invalid JSON: nested deeper than {} levels (the limit is {} per resource)", b.max_depth,
                               kMaxResourceDepth)};
    if (ec) return Error{"invalid JSON: " + ec.message()};
    return v;
  } catch (const std::bad_alloc&) {
    return Error{fmt::format("out of memory while parsing a JSON document of {} bytes", text.size())};
  }
}

size_t depth(const json::value& v, size_t stop) {
  if (stop == 0) return 0;
  size_t d = 0;
  if (v.is_object()) {
    for (const auto& kv : v.as_object()) d = std::max(d, depth(kv.value(), stop - 1));
    return d + 1;
  }
  if (v.is_array()) {
    for (const auto& e : v.as_array()) d = std::max(d, depth(e, stop - 1));
    return d + 1;
  }
  return 0;
}

namespace {
Status too_deep() { return Error{fmt::format("nested deeper than {} levels (the limit per resource)", kMaxResourceDepth)}; }
}  // namespace

Status check_resource_depth(const json::value& v) {
  if (depth(v) > kMaxResourceDepth) return too_deep();
  return {};
}

Status check_resource_depth(const json::object& o) {
  for (const auto& kv : o)
    if (depth(kv.value(), kMaxResourceDepth) + 1 > kMaxResourceDepth) return too_deep();
  return {};
}

}  // namespace holdfast::budgets
