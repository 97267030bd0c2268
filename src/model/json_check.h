// Small helpers for validating JSON resources with error messages that name
// the property, in the spirit of APISIX's jsonschema messages.
#pragma once
#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace holdfast::model {

namespace json = boost::json;

// Wraps an object being validated; the first failure is kept in `error`.
class Checker {
 public:
  Checker(const json::object& obj, std::string where) : obj_(obj), where_(std::move(where)) {}

  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  void fail(const std::string& msg);

  // Rejects properties not in `allowed` (additionalProperties: false).
  void only(std::initializer_list<const char*> allowed);
  void only(const std::vector<std::string_view>& allowed);
  bool has(const char* key) const;
  const json::value* get(const char* key) const;

  std::optional<std::string> str(const char* key, bool required = false, size_t min = 0,
                                 size_t max = SIZE_MAX);
  std::optional<int64_t> integer(const char* key, bool required = false,
                                 int64_t min = INT64_MIN, int64_t max = INT64_MAX);
  std::optional<double> number(const char* key, bool required = false, double min = -1e300,
                               bool exclusive_min = false);
  std::optional<bool> boolean(const char* key);
  const json::object* object(const char* key, bool required = false);
  const json::array* array(const char* key, bool required = false, size_t min_items = 0);
  std::optional<std::vector<std::string>> str_array(const char* key, size_t min_items = 0);
  std::optional<std::string> one_of(const char* key, const std::set<std::string>& values,
                                    const char* def);

 private:
  const json::object& obj_;
  std::string where_;
  std::string error_;
};

// APISIX ids: string 1-64 [a-zA-Z0-9-_.] or integer >= 1; returned as string.
Result<std::string> parse_id(const json::value& v);
bool valid_host(std::string_view h);          // host_def
bool valid_ip_or_cidr(std::string_view s);
std::string type_name(const json::value& v);

}  // namespace holdfast::model
