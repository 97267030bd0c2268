// limit-req (priority 1001): request rate limiting with a leaky bucket per key,
// as resty.limit.req with APISIX's local policy. Requests above `rate` per
// second are delayed until the bucket has room (up to `burst` of them at once)
// or, with `nodelay`, let through at once; beyond the burst they are
// rejected. The bucket of each key lives in the process's `plugin-limit-req`
// store (plugins/shared_dict.h), shared by every worker and bounded in bytes,
// so that clients choosing keys cannot grow the process.
#include <fmt/format.h>

#include <boost/json.hpp>
#include <algorithm>
#include <cmath>

#include "core/log.h"
#include "plugins/common.h"
#include "plugins/limit_common.h"
#include "plugins/shared_dict.h"

namespace holdfast::plugins {
namespace {

class LimitReq final : public Plugin {
 public:
  // resty.limit.req keeps rate and burst in thousandths of a request, so
  // that a bucket leaks by the millisecond.
  double rate_m = 0, burst_m = 0;
  std::string key, key_type = "var";
  int rejected_code = 503;
  std::string rejected_msg;
  bool nodelay = false;
  bool allow_degradation = false;
  std::string prefix;  // resource scope + config digest
  SharedDict* dict = nullptr;

  // resty.limit.req's incoming(key, commit = true): the seconds this request
  // waits, -1 when it is rejected, -2 when the key cannot be stored. The
  // slot holds the excess (n[0], thousandths of a request) and the time of
  // the last request let through (n[1], ms).
  double incoming(std::string_view k) const {
    const int64_t now = limit_now_ms();
    double delay = -2;
    dict->update(k, now, [&](SharedDict::Slot& s, bool fresh) {
      double excess = 0;
      if (!fresh) {
        const double elapsed = static_cast<double>(std::llabs(now - s.n[1]));
        excess = std::max(static_cast<double>(s.n[0]) - rate_m * elapsed / 1000 + 1000, 0.0);
        if (excess > burst_m) {
          delay = -1;  // a rejected request leaves the bucket as it was
          return;
        }
      }
      s.n[0] = static_cast<int64_t>(std::min(excess, 9e18));  // an integer, as resty's uint64 field
      s.n[1] = now;
      // Once the bucket has leaked all of this excess and the next request's
      // share, the next request finds it as if new: the entry may then be
      // reclaimed as expired instead of pushing out one that still limits.
      const double drain_ms = std::ceil((excess + 1000) * 1000 / rate_m) + 1;
      s.expire_ms = drain_ms < 1e13 ? now + static_cast<int64_t>(drain_ms) : 0;
      delay = excess / rate_m;
    });
    return delay;
  }

  Action access(RequestCtx& ctx) const override {
    // One buffer per worker thread: no allocation per request for the key.
    thread_local std::string full;
    full.assign(prefix).append(":").append(limit_key(ctx, key, key_type));
    const double delay = incoming(full);
    if (delay == -1) {
      if (rejected_msg.empty())
        ctx.respond(rejected_code, "", "");
      else
        ctx.respond(rejected_code, json_error_msg(rejected_msg));
      return Action::respond;
    }
    if (delay < 0) return no_memory(ctx, *dict, "limit req", allow_degradation);
    // The proxy waits on a timer of the connection's own coroutine: the
    // worker goes on serving other connections meanwhile.
    if (delay >= 0.001 && !nodelay) {
      log::debug("limit-req: delaying the request by {:.3f} s (key {})", delay, log::json_escape(full));
      // Capped so that the timer's arithmetic stays in range whatever the
      // rate and burst (11 days; APISIX has no cap).
      ctx.delay_seconds += std::min(delay, 1e6);
    }
    return Action::next;
  }
};

// APISIX's schema leaves other fields open: they are warned about and
// ignored. Only the local policy is implemented (another is refused by
// value), so the redis settings are ignored too, with a warning naming them.
const FieldRules kFields{
    .implemented = {"rate", "burst", "key", "key_type", "policy", "rejected_code", "rejected_msg", "nodelay",
                    "allow_degradation"},
    .ignored = {"redis_host", "redis_port", "redis_username", "redis_password", "redis_database", "redis_timeout",
                "redis_ssl", "redis_ssl_verify", "redis_cluster_nodes", "redis_cluster_name", "redis_cluster_ssl",
                "redis_cluster_ssl_verify", "keepalive_timeout", "keepalive_pool"}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string& scope) {
  auto p = std::make_shared<LimitReq>();
  Checker c(conf, "limit-req");
  c.only(kFields.implemented);
  // APISIX's schema order: properties first, then `required`.
  auto rate = c.number("rate", false, 0, true);
  auto burst = c.number("burst", false, 0);
  auto key = c.str("key");
  p->key_type = c.one_of("key_type", {"var", "var_combination"}, "var").value_or("var");
  auto policy = c.one_of("policy", {"local", "redis", "redis-cluster"}, "local");
  p->rejected_code = static_cast<int>(c.integer("rejected_code", false, 200, 599).value_or(503));
  p->rejected_msg = c.str("rejected_msg", false, 1).value_or("");
  p->nodelay = c.boolean("nodelay").value_or(false);
  p->allow_degradation = c.boolean("allow_degradation").value_or(false);
  for (const char* k : {"rate", "burst", "key"})
    if (!c.failed() && !c.has(k)) c.fail(fmt::format("property \"{}\" is required", k));
  if (policy && *policy != "local" && !c.failed()) c.fail("policy " + *policy + " is not supported yet (only local)");
  p->rate_m = rate.value_or(1) * 1000;
  p->burst_m = burst.value_or(0) * 1000;
  p->key = key.value_or("");
  p->prefix = limit_scope(scope, conf);
  p->dict = &shared_dict("plugin-limit-req");
  return done(c, p);
}

}  // namespace

extern const PluginDef kLimitReq{"limit-req", 1001, false, &create, nullptr, nullptr, &kFields};

}  // namespace holdfast::plugins
