#include "plugins/limit_common.h"

#include <fmt/format.h>

#include <atomic>
#include <boost/json.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>

#include "core/log.h"
#include "plugins/shared_dict.h"
#include "router/vars.h"
#include "upstream/balancer.h"

namespace holdfast::plugins {

std::string limit_key(const RequestCtx& ctx, const std::string& key, std::string_view key_type) {
  if (key_type == "constant") return key;
  if (key_type == "var_combination") {
    size_t n = 0;
    std::string k = router::resolve_var(key, ctx, &n);
    if (n > 0) return k;
  } else if (auto v = ctx.var(key)) {
    return *v;
  }
  return ctx.remote_addr;
}

std::string limit_scope(const std::string& scope, const boost::json::object& conf) {
  return fmt::format("{}:{:08x}", scope, upstream::crc32(boost::json::serialize(conf)));
}

std::optional<LimitAmount> parse_limit_amount(const boost::json::value& v, bool allow_zero) {
  LimitAmount a;
  const int64_t min = allow_zero ? 0 : 1;
  if (v.is_string())
    a.tmpl = std::string(v.as_string());
  else if (v.is_int64() && v.as_int64() >= min)
    a.fixed = v.as_int64();
  else if (v.is_uint64())
    a.fixed = static_cast<int64_t>(std::min<uint64_t>(v.as_uint64(), INT64_MAX));
  else if (v.is_double() && v.as_double() >= static_cast<double>(min) && v.as_double() == std::floor(v.as_double()) &&
           v.as_double() < 9.2e18)
    a.fixed = static_cast<int64_t>(v.as_double());
  else
    return std::nullopt;
  return a;
}

Result<int64_t> resolve_amount(const std::string& tmpl, const RequestCtx& ctx, bool allow_zero, bool show_value) {
  std::string v = router::resolve_var(tmpl, ctx);
  // Lua's tonumber: surrounding white space is allowed.
  size_t b = v.find_first_not_of(" \t\r\n"), e = v.find_last_not_of(" \t\r\n");
  std::string t = b == std::string::npos ? std::string() : v.substr(b, e - b + 1);
  char* end = nullptr;
  double d = t.empty() ? 0 : std::strtod(t.c_str(), &end);
  if (t.empty() || end != t.c_str() + t.size() || std::isnan(d))
    return Error{show_value ? "resolved value is not a number: " + v : std::string("resolved value is not a number")};
  if (allow_zero ? d < 0 : d <= 0)
    return Error{fmt::format("resolved value must be a {} number, got: {:.14g}",
                             allow_zero ? "non-negative" : "positive", d)};
  if (d != std::floor(d)) return Error{fmt::format("resolved value must be an integer, got: {:.14g}", d)};
  if (d > 9007199254740991.0)
    return Error{fmt::format("resolved value exceeds safe integer range (2^53-1), got: {:.14g}", d)};
  return static_cast<int64_t>(d);
}

int64_t limit_now_ms() {
  // Milliseconds, not whole seconds: a window must last its full length even
  // when it starts just before a second boundary, and a leaky bucket leaks
  // by the millisecond (resty.limit.req reads ngx.now() * 1000).
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void log_no_memory(const SharedDict& dict, std::string_view what) {
  static std::atomic<int64_t> next{0};
  int64_t now = limit_now_ms(), due = next.load(std::memory_order_relaxed);
  if (now < due || !next.compare_exchange_strong(due, now + 60000)) return;
  log::error("failed to {}: no memory (a key is larger than a shard of lua_shared_dict {}; see "
             "holdfast_shared_dict_no_memory_total)",
             what, dict.name());
}

Action no_memory(RequestCtx& ctx, const SharedDict& dict, std::string_view what, bool allow_degradation,
                 std::string body) {
  log_no_memory(dict, what);
  if (allow_degradation) return Action::next;
  if (body.empty())
    ctx.respond(500, "", "");
  else
    ctx.respond(500, std::move(body));
  return Action::respond;
}

}  // namespace holdfast::plugins
