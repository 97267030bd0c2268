// libFuzzer target: the lua-resty-expr compiler (route `vars`, `_meta.filter`)
// on arbitrary JSON, and evaluation of what compiles against variables that
// are derived from the input, so regexes, numbers, `in`, `has` and
// `ipmatch` all run on hostile values.
#include <boost/json/parse.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "router/expr.h"

namespace {

// Variables whose name starts with "unset" are unset; every other variable
// has the same value, taken from the input after its first NUL.
class Vars : public holdfast::router::VarSource {
 public:
  explicit Vars(std::string_view value) : value_(value) {}
  std::optional<std::string> var(std::string_view name) const override {
    if (name.starts_with("unset")) return std::nullopt;
    return std::string(value_);
  }

 private:
  std::string_view value_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t nul = in.find('\0');
  std::string_view expr = in.substr(0, nul);
  std::string_view value = nul == std::string_view::npos ? std::string_view("127.0.0.1") : in.substr(nul + 1);
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(expr, ec);
  if (ec) return 0;
  auto compiled = holdfast::router::Expr::compile(v);
  if (!compiled) return 0;
  Vars vars(value);
  (void)(*compiled)->eval(vars);
  return 0;
}
