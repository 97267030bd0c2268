// What the rate-limiting plugins (limit-count, limit-req, limit-conn) share:
// how a request's key is resolved, the prefix one plugin instance counts
// under in its shared dict, and the per-request amounts read from variables.
#pragma once
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/status.h"
#include "plugins/plugin.h"

namespace holdfast::plugins {

class SharedDict;

// The key a request counts under, as APISIX's key_type reads `key`: "var"
// one variable ($remote_addr, $http_x_user, ...), "var_combination" a
// template ("$remote_addr $http_x_user"), "constant" the text itself. A key
// that resolves to nothing (an unset variable, a template none of whose
// variables is set) counts the client address instead, as APISIX does.
std::string limit_key(const RequestCtx& ctx, const std::string& key, std::string_view key_type);

// The prefix of one plugin instance's keys: the owning resource and a digest
// of its configuration (APISIX: resource_key .. conf_version), so that a
// reload that leaves the plugin unchanged keeps its state and a changed
// configuration starts afresh.
std::string limit_scope(const std::string& scope, const boost::json::object& conf);

// A count, time_window, conn or burst: an integer (APISIX: > 0, or >= 0 for
// burst), or (APISIX 3.x) a string resolved per request with
// core.utils.resolve_var, e.g. "${http_x_quota ?? 10}".
struct LimitAmount {
  int64_t fixed = 0;
  std::optional<std::string> tmpl;
};
// The value as the schema's oneOf {integer, string} takes it; nullopt when it
// is neither (APISIX: "value should match only one schema, but matches none").
std::optional<LimitAmount> parse_limit_amount(const boost::json::value& v, bool allow_zero = false);

// A count, conn or burst given as a string is resolved per request
// (core.utils.resolve_var, "${http_x_quota ?? 10}"); the result must be an
// integer number > 0 (>= 0 with allow_zero) up to 2^53-1, else the request
// fails with APISIX's message. `show_value`: limit-conn's "is not a number"
// message names what was resolved, limit-count's does not.
Result<int64_t> resolve_amount(const std::string& tmpl, const RequestCtx& ctx, bool allow_zero = false,
                               bool show_value = false);
inline Result<int64_t> resolve_amount(const LimitAmount& a, const RequestCtx& ctx, bool allow_zero = false,
                                      bool show_value = false) {
  if (!a.tmpl) return a.fixed;
  return resolve_amount(*a.tmpl, ctx, allow_zero, show_value);
}

// A key too large for `dict` fails every request that carries it: says so
// (naming `what`, e.g. "limit count") at most once a minute, not per request.
void log_no_memory(const SharedDict& dict, std::string_view what);

// A request whose key `dict` has no room for: logged (log_no_memory), then
// let through when the plugin allows degradation, else answered 500 with
// `body` (JSON; empty: no body and no Content-Type, as limit-req and
// limit-conn answer).
Action no_memory(RequestCtx& ctx, const SharedDict& dict, std::string_view what, bool allow_degradation,
                 std::string body = {});

// Milliseconds on the steady clock: the time base of every limit's state.
int64_t limit_now_ms();

}  // namespace holdfast::plugins
