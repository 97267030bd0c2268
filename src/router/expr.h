// lua-resty-expr expressions (route `vars`, plugin `_meta.filter`,
// fault-injection `vars`), compiled once; regexes through
// core/user_regex.h (PCRE2, as APISIX).
#pragma once
#include <boost/json/value.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "router/vars.h"

namespace holdfast::router {

// What every compile error starts with (APISIX's admin prefix for route
// vars); fault-injection answers without it, as APISIX does.
inline constexpr std::string_view kVarsError = "failed to validate the 'vars' expression: ";

class Expr {
 public:
  static Result<std::shared_ptr<const Expr>> compile(const boost::json::value& v);
  bool eval(const VarSource& vars) const;
  // Whether some condition reads a variable whose name starts with `prefix`.
  bool reads(std::string_view prefix) const;
  ~Expr();

  struct Node;  // opaque: a condition or a nested logical group

 private:
  std::unique_ptr<Node> root_;
};

}  // namespace holdfast::router
