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

// A TLS connection's variables (nginx's $ssl_*), set at the end of its
// handshake.
struct TlsVars {
  std::string server_name;    // $ssl_server_name: the SNI (normalised); "" when none was sent
  std::string client_verify;  // $ssl_client_verify: SUCCESS, FAILED:<reason> or NONE
  std::string client_s_dn;    // $ssl_client_s_dn: the subject, RFC 2253 ("" without a certificate)
  std::string client_serial;  // $ssl_client_serial: uppercase hex ("" without a certificate)
};

// Expands "$var" and "${var}" in a template; unset variables become "".
std::string expand_vars(std::string_view tmpl, const VarSource& vars);

// APISIX's core.utils.resolve_var, for the plugins that use it (limit-count,
// mocking): `$name` (letters, digits, `_`, `.`) and `${name}` (spaces around
// the name ignored, `${name ?? default}` for an unset one); a `$` right after
// a backslash is left alone (the backslash stays, as in APISIX); unset
// variables become "". `n_resolved` counts the variables that had a value.
std::string resolve_var(std::string_view tmpl, const VarSource& vars, size_t* n_resolved = nullptr);

}  // namespace holdfast::router
