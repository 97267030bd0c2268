#include "core/secret_ref.h"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <cstdlib>
#include <string>

namespace holdfast::secret {
namespace json = boost::json;

namespace {

constexpr std::string_view kEnv = "$env://";
constexpr std::string_view kSecret = "$secret://";

bool has_env_prefix(std::string_view s) {
  if (s.size() < kEnv.size()) return false;
  for (size_t i = 0; i < kEnv.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != kEnv[i]) return false;
  return true;
}

// What a reference stands for, or why it cannot be had. The messages name
// the reference and never echo a value read from the environment.
Result<json::value> fetch(std::string_view ref) {
  if (ref.starts_with(kSecret)) {
    std::string_view path = ref.substr(kSecret.size());
    std::string_view manager = path.substr(0, path.find('/'));
    return Error{fmt::format("secret reference {}: secret manager {} is not supported (only $env:// references are)",
                             ref, manager.empty() ? std::string_view("(none)") : manager)};
  }
  // As APISIX's env.lua: NAME up to the first '/', the rest is a key into
  // the variable's JSON value.
  std::string_view path = ref.substr(kEnv.size());
  const size_t slash = path.find('/');
  const std::string name(path.substr(0, slash));
  const std::string_view key = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
  const char* raw = name.empty() ? nullptr : std::getenv(name.c_str());
  if (!raw) return Error{fmt::format("secret reference {}: environment variable {} is not set", ref, name)};
  if (key.empty()) return json::value(json::string(raw));
  boost::system::error_code ec;
  json::value v = json::parse(raw, ec);
  if (ec || !v.is_object())
    return Error{fmt::format("secret reference {}: environment variable {} does not hold a JSON object", ref, name)};
  const json::value* item = v.as_object().if_contains(key);
  if (!item || item->is_null())
    return Error{fmt::format("secret reference {}: the JSON value of {} has no key {}", ref, name, key)};
  return *item;
}

}  // namespace

bool is_reference(std::string_view s) { return !s.empty() && s[0] == '$' && (s.starts_with(kSecret) || has_env_prefix(s)); }

bool has_reference(const json::value& v) {
  if (const json::string* s = v.if_string()) return is_reference(*s);
  if (const json::object* o = v.if_object()) return has_reference(*o);
  if (const json::array* a = v.if_array()) return has_reference(*a);
  return false;
}
bool has_reference(const json::object& o) {
  for (const auto& kv : o)
    if (has_reference(kv.value())) return true;
  return false;
}
bool has_reference(const json::array& a) {
  for (const auto& x : a)
    if (has_reference(x)) return true;
  return false;
}

Status resolve(json::value& v) {
  if (json::string* s = v.if_string()) {
    if (!is_reference(*s)) return {};
    auto got = fetch(*s);
    if (!got) return Error{got.error()};
    v = std::move(*got);  // APISIX puts in whatever the key holds
    return {};
  }
  if (json::object* o = v.if_object()) {
    for (auto& kv : *o)
      if (auto st = resolve(kv.value()); !st) return st;
  } else if (json::array* a = v.if_array()) {
    for (auto& x : *a)
      if (auto st = resolve(x); !st) return st;
  }
  return {};
}

Status resolve_plugins(json::object& plugins) {
  for (auto& kv : plugins) {
    if (auto st = resolve(kv.value()); !st) return Error{fmt::format("plugin {}: {}", std::string(kv.key()), st.error())};
  }
  return {};
}

}  // namespace holdfast::secret
