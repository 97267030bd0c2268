#include "model/json_check.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <boost/json.hpp>
#include <algorithm>

namespace holdfast::model {

std::string type_name(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null: return "null";
    case json::kind::bool_: return "boolean";
    // lua-jsonschema (APISIX_COMPAT §5.4) calls every JSON number "number".
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_: return "number";
    case json::kind::string: return "string";
    case json::kind::array: return "array";
    case json::kind::object: return "object";
  }
  return "?";
}

void Checker::fail(const std::string& msg) {
  if (error_.empty()) error_ = msg;
}

void Checker::only(std::initializer_list<const char*> allowed) {
  for (const auto& kv : obj_) {
    bool ok = false;
    for (const char* a : allowed)
      if (kv.key() == a) { ok = true; break; }
    if (!ok) { fail(fmt::format("additional properties forbidden, found {}", std::string(kv.key()))); return; }
  }
}

void Checker::only(const std::vector<std::string_view>& allowed) {
  for (const auto& kv : obj_) {
    if (std::find(allowed.begin(), allowed.end(), std::string_view(kv.key())) != allowed.end()) continue;
    fail(fmt::format("additional properties forbidden, found {}", std::string(kv.key())));
    return;
  }
}

bool Checker::has(const char* key) const { return obj_.contains(key); }

const json::value* Checker::get(const char* key) const {
  auto it = obj_.find(key);
  return it == obj_.end() ? nullptr : &it->value();
}

std::optional<std::string> Checker::str(const char* key, bool required, size_t min, size_t max) {
  const json::value* v = get(key);
  if (!v) {
    if (required) fail(fmt::format("property \"{}\" is required", key));
    return std::nullopt;
  }
  if (!v->is_string()) {
    fail(fmt::format("property \"{}\" validation failed: wrong type: expected string, got {}", key, type_name(*v)));
    return std::nullopt;
  }
  std::string s(v->as_string());
  if (s.size() < min) { fail(fmt::format("property \"{}\" validation failed: string too short, expected at least {}, got {}", key, min, s.size())); return std::nullopt; }
  if (s.size() > max) { fail(fmt::format("property \"{}\" validation failed: string too long, expected at most {}, got {}", key, max, s.size())); return std::nullopt; }
  return s;
}

std::optional<int64_t> Checker::integer(const char* key, bool required, int64_t min, int64_t max) {
  const json::value* v = get(key);
  if (!v) {
    if (required) fail(fmt::format("property \"{}\" is required", key));
    return std::nullopt;
  }
  int64_t i;
  if (v->is_int64()) i = v->as_int64();
  else if (v->is_uint64() && v->as_uint64() <= INT64_MAX) i = static_cast<int64_t>(v->as_uint64());
  else if (v->is_double() && v->as_double() == static_cast<double>(static_cast<int64_t>(v->as_double())))
    i = static_cast<int64_t>(v->as_double());
  else {
    fail(fmt::format("property \"{}\" validation failed: wrong type: expected integer, got {}", key, type_name(*v)));
    return std::nullopt;
  }
  if (i < min) { fail(fmt::format("property \"{}\" validation failed: expected {} to be at least {}", key, i, min)); return std::nullopt; }
  if (i > max) { fail(fmt::format("property \"{}\" validation failed: expected {} to be at most {}", key, i, max)); return std::nullopt; }
  return i;
}

std::optional<double> Checker::number(const char* key, bool required, double min, bool exclusive_min) {
  const json::value* v = get(key);
  if (!v) {
    if (required) fail(fmt::format("property \"{}\" is required", key));
    return std::nullopt;
  }
  double d;
  if (v->is_int64()) d = static_cast<double>(v->as_int64());
  else if (v->is_uint64()) d = static_cast<double>(v->as_uint64());
  else if (v->is_double()) d = v->as_double();
  else {
    fail(fmt::format("property \"{}\" validation failed: wrong type: expected number, got {}", key, type_name(*v)));
    return std::nullopt;
  }
  if (exclusive_min ? !(d > min) : !(d >= min)) {
    fail(fmt::format("property \"{}\" validation failed: expected {} to be {} {}", key, d,
                     exclusive_min ? "greater than" : "at least", min));
    return std::nullopt;
  }
  return d;
}

std::optional<bool> Checker::boolean(const char* key) {
  const json::value* v = get(key);
  if (!v) return std::nullopt;
  if (!v->is_bool()) {
    fail(fmt::format("property \"{}\" validation failed: wrong type: expected boolean, got {}", key, type_name(*v)));
    return std::nullopt;
  }
  return v->as_bool();
}

const json::object* Checker::object(const char* key, bool required) {
  const json::value* v = get(key);
  if (!v) {
    if (required) fail(fmt::format("property \"{}\" is required", key));
    return nullptr;
  }
  if (!v->is_object()) {
    fail(fmt::format("property \"{}\" validation failed: wrong type: expected object, got {}", key, type_name(*v)));
    return nullptr;
  }
  return &v->as_object();
}

const json::array* Checker::array(const char* key, bool required, size_t min_items) {
  const json::value* v = get(key);
  if (!v) {
    if (required) fail(fmt::format("property \"{}\" is required", key));
    return nullptr;
  }
  if (!v->is_array()) {
    fail(fmt::format("property \"{}\" validation failed: wrong type: expected array, got {}", key, type_name(*v)));
    return nullptr;
  }
  if (v->as_array().size() < min_items) {
    fail(fmt::format("property \"{}\" validation failed: expect array to have at least {} items", key, min_items));
    return nullptr;
  }
  return &v->as_array();
}

std::optional<std::vector<std::string>> Checker::str_array(const char* key, size_t min_items) {
  const json::array* a = array(key, false, min_items);
  if (!a) return std::nullopt;
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& e : *a) {
    if (!e.is_string()) {
      fail(fmt::format("property \"{}\" validation failed: failed to validate item {}: wrong type: expected string, got {}", key, out.size() + 1, type_name(e)));
      return std::nullopt;
    }
    std::string s(e.as_string());
    if (!seen.insert(s).second) {
      fail(fmt::format("property \"{}\" validation failed: expected unique items but items {} are equal", key, s));
      return std::nullopt;
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::optional<std::string> Checker::one_of(const char* key, const std::set<std::string>& values,
                                           const char* def) {
  auto s = str(key);
  if (failed()) return std::nullopt;
  if (!s) return def ? std::optional<std::string>(def) : std::nullopt;
  if (!values.count(*s)) {
    std::string list;
    for (const auto& v : values) list += (list.empty() ? "" : ", ") + v;
    fail(fmt::format("property \"{}\" validation failed: matches none of the enum values ({})", key, list));
    return std::nullopt;
  }
  return s;
}

Result<std::string> parse_id(const json::value& v) {
  if (v.is_int64() && v.as_int64() >= 1) return std::to_string(v.as_int64());
  if (v.is_uint64()) return std::to_string(v.as_uint64());
  if (v.is_string()) {
    std::string_view s = v.as_string();
    if (s.empty() || s.size() > 64) return Error{"property \"id\" validation failed: object matches none of the required"};
    for (char c : s) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_' || c == '.';
      if (!ok) return Error{"property \"id\" validation failed: object matches none of the required"};
    }
    return std::string(s);
  }
  return Error{"property \"id\" validation failed: object matches none of the required"};
}

bool valid_host(std::string_view h) {
  // ^\*$|^\*?[0-9a-zA-Z-._\[\]:]+$
  if (h == "*") return true;
  if (!h.empty() && h[0] == '*') h.remove_prefix(1);
  if (h.empty()) return false;
  for (char c : h) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || c == '[' || c == ']' || c == ':';
    if (!ok) return false;
  }
  return true;
}

bool valid_ip_or_cidr(std::string_view s) {
  std::string addr(s);
  int bits = -1;
  if (auto slash = addr.find('/'); slash != std::string::npos) {
    std::string b = addr.substr(slash + 1);
    addr.resize(slash);
    if (b.empty() || b.size() > 3 || b.find_first_not_of("0123456789") != std::string::npos) return false;
    bits = std::stoi(b);
  }
  unsigned char buf[16];
  if (inet_pton(AF_INET, addr.c_str(), buf) == 1) return bits <= 32;
  if (inet_pton(AF_INET6, addr.c_str(), buf) == 1) return bits <= 128;
  return false;
}

}  // namespace holdfast::model
