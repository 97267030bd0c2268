// Read access to request variables (nginx/APISIX names: uri, host,
// remote_addr, arg_*, http_*, cookie_*, ...) for expressions and templates.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace holdfast::router {

class VarSource {
 public:
  virtual ~VarSource() = default;
  // nullopt when the variable is unset (nil in Lua).
  virtual std::optional<std::string> var(std::string_view name) const = 0;
};

// Expands "$var" and "${var}" in a template; unset variables become "".
std::string expand_vars(std::string_view tmpl, const VarSource& vars);

}  // namespace holdfast::router
