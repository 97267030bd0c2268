#include "plugins/common.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/log.h"

namespace holdfast::plugins {

std::mt19937_64& rng() {
  thread_local std::mt19937_64 g{std::random_device{}()};
  return g;
}

bool sample(std::optional<int64_t> percentage) {
  if (!percentage) return true;
  return static_cast<int64_t>(rng()() % 100) < *percentage;
}

std::string uuid_v4() {
  uint64_t a = rng()(), b = rng()();
  a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0xffff, b >> 48,
                     b & 0xffffffffffffULL);
}

std::string json_message(std::string_view msg) { return fmt::format("{{\"message\":\"{}\"}}\n", log::json_escape(msg)); }
std::string json_error_msg(std::string_view msg) { return fmt::format("{{\"error_msg\":\"{}\"}}\n", log::json_escape(msg)); }

std::string lua_number(const json::value& v) {
  double d = v.is_int64()    ? static_cast<double>(v.as_int64())
             : v.is_uint64() ? static_cast<double>(v.as_uint64())
                             : v.as_double();
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  return fmt::format("{:.14g}", d);
}

RegexPairs parse_regex_pairs(Checker& c, const char* key) {
  RegexPairs out;
  const json::array* r = c.array(key, false, 2);
  if (!r) return out;
  if (r->size() % 2 != 0) c.fail(fmt::format("property \"{}\" validation failed: expected pairs of [regex, template]", key));
  for (size_t i = 0; i + 1 < r->size() && !c.failed(); i += 2) {
    if (!(*r)[i].is_string() || !(*r)[i + 1].is_string()) {
      c.fail(fmt::format("property \"{}\" validation failed: expected strings", key));
      break;
    }
    std::string_view pattern = (*r)[i].as_string(), tmpl = (*r)[i + 1].as_string();
    auto re = UserRegex::compile(pattern);
    auto t = RegexTemplate::parse(tmpl);
    if (!re || !t) {
      // As APISIX's check_schema words it (it test-substitutes "/fake_uri").
      c.fail(fmt::format("invalid {}({}, {}): {}", key, pattern, tmpl, !re ? re.error() : t.error()));
      break;
    }
    out.emplace_back(std::move(*re), std::move(*t));
  }
  return out;
}

Result<bool> apply_regex_pairs(const RegexPairs& pairs, std::string_view uri, std::string& out) {
  for (const auto& [re, tmpl] : pairs) {
    auto n = regex_substitute(*re, uri, tmpl, false, out);
    if (!n) return Error{fmt::format("failed to match the uri {} ({}) : {}", uri, re->pattern(), n.error())};
    if (*n > 0) return true;
  }
  return false;
}

Result<HeaderOps> parse_header_ops(const json::value& v, bool multi_values) {
  HeaderOps ops;
  if (!v.is_object()) return Error{"property \"headers\" validation failed: wrong type: expected object"};
  const auto& o = v.as_object();
  bool structured = o.contains("add") || o.contains("set") || o.contains("remove");
  auto scalar = [](const json::value& x) -> std::optional<std::string> {
    if (x.is_string()) return std::string(x.as_string());
    if (x.is_number()) return json::serialize(x);
    return std::nullopt;
  };
  auto read_map = [&](const json::value& m, HeaderList& out, bool arrays) -> Status {
    if (!m.is_object()) return Error{"expected object"};
    for (const auto& kv : m.as_object()) {
      std::string name(kv.key());
      if (auto val = scalar(kv.value())) {
        out.emplace_back(name, std::move(*val));
        continue;
      }
      // APISIX's schema: a non-empty array of strings or numbers.
      if (!arrays || !kv.value().is_array() || kv.value().as_array().empty())
        return Error{fmt::format("header {}: value must be a string or number{}", name,
                                 arrays ? " or a non-empty array of them" : "")};
      for (const auto& e : kv.value().as_array()) {
        auto val = scalar(e);
        if (!val) return Error{fmt::format("header {}: array items must be strings or numbers", name)};
        out.emplace_back(name, std::move(*val));
      }
    }
    return {};
  };
  if (!structured) {
    if (auto s = read_map(v, ops.set, false); !s) return Error{"property \"headers\" validation failed: " + s.error()};
    return ops;
  }
  if (auto it = o.find("add"); it != o.end())
    if (auto s = read_map(it->value(), ops.add, multi_values); !s) return Error{"property \"headers.add\" validation failed: " + s.error()};
  if (auto it = o.find("set"); it != o.end())
    if (auto s = read_map(it->value(), ops.set, multi_values); !s) return Error{"property \"headers.set\" validation failed: " + s.error()};
  if (auto it = o.find("remove"); it != o.end()) {
    if (!it->value().is_array()) return Error{"property \"headers.remove\" validation failed: expected array"};
    for (const auto& e : it->value().as_array()) {
      if (!e.is_string()) return Error{"property \"headers.remove\" validation failed: expected strings"};
      ops.remove.emplace_back(e.as_string());
    }
  }
  return ops;
}

std::string shown_name(std::string_view k) {
  const bool plain = !k.empty() && k.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") ==
                                       std::string_view::npos;
  return plain ? std::string(k) : json::serialize(json::string(k));
}

namespace {
bool listed(const std::vector<std::string_view>& list, std::string_view k) {
  return std::find(list.begin(), list.end(), k) != list.end();
}
}  // namespace

Result<json::object> screen_fields(const json::object& conf, const FieldRules& rules,
                                   std::vector<std::string>& warnings, const std::string& path) {
  if (conf.size() < rules.min_properties)
    return Error{fmt::format("expect object to have at least {} properties", rules.min_properties)};
  json::object out;
  for (const auto& kv : conf) {
    const std::string_view k = kv.key();
    const std::string name = path.empty() ? shown_name(k) : path + "." + shown_name(k);
    if (listed(rules.implemented, k)) {
      const FieldRules* inner = nullptr;
      for (const auto& [n, r] : rules.nested)
        if (n == k) inner = r;
      if (inner && kv.value().is_object()) {
        auto s = screen_fields(kv.value().as_object(), *inner, warnings, name);
        if (!s) return Error{fmt::format("property \"{}\" validation failed: {}", shown_name(k), s.error())};
        out[k] = std::move(*s);
      } else if (inner && kv.value().is_array()) {
        // An array of objects (response-rewrite filters, limit-count rules);
        // what is not an object is left for the parser to refuse.
        json::array items;
        for (const auto& e : kv.value().as_array()) {
          if (!e.is_object()) {
            items.push_back(e);
            continue;
          }
          auto s = screen_fields(e.as_object(), *inner, warnings, fmt::format("{}[{}]", name, items.size() + 1));
          if (!s)
            return Error{fmt::format("property \"{}\" validation failed: failed to validate item {}: {}", shown_name(k),
                                     items.size() + 1, s.error())};
          items.push_back(std::move(*s));
        }
        out[k] = std::move(items);
      } else {
        out[k] = kv.value();
      }
      continue;
    }
    if (listed(rules.refused, k))
      return Error{fmt::format("field {} is not supported by Holdfast (ignoring it would change the behaviour)", shown_name(k))};
    if (listed(rules.ignored, k)) {
      warnings.push_back(fmt::format("field {} is not implemented by Holdfast (ignored: it changes nothing here)", name));
      continue;
    }
    if (rules.closed) return Error{fmt::format("additional properties forbidden, found {}", shown_name(k))};
    warnings.push_back(fmt::format("unknown field {} (ignored, as APISIX ignores it)", name));
  }
  return out;
}

}  // namespace holdfast::plugins
