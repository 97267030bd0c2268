// limit-count (priority 1002): fixed-window request counting per key with
// the local policy. Counters are shared by all workers of the process and
// keyed by the owning resource and a digest of this config, so a reload that
// leaves the plugin unchanged keeps counting (APISIX: key includes the conf
// version).
#include <fmt/format.h>

#include <boost/json.hpp>
#include <chrono>
#include <mutex>
#include <unordered_map>

#include "http/balancer.h"
#include "plugins/common.h"
#include "router/vars.h"

namespace holdfast::plugins {
namespace {

struct Window {
  int64_t end_ms = 0;  // the window starts with its first request (as APISIX's local counter)
  int64_t count = 0;
};

// Shards keep workers from contending on one lock.
class Store {
 public:
  // Returns remaining (>= 0 when allowed, -1 when rejected) and the seconds
  // until the window resets (rounded up).
  int64_t incoming(const std::string& key, int64_t limit, int64_t window_s, int64_t& reset) {
    // Milliseconds, not whole seconds: a window must last its full length
    // even when it starts just before a second boundary.
    const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now().time_since_epoch()).count();
    const int64_t window_ms = window_s * 1000;
    Shard& s = shards_[std::hash<std::string>{}(key) % kShards];
    std::lock_guard lk(s.mu);
    // Expired windows are dropped now and then, so keys of past clients do
    // not accumulate.
    if (++s.ops % 4096 == 0) std::erase_if(s.map, [now](const auto& kv) { return now >= kv.second.end_ms; });
    Window& w = s.map[key];
    if (w.count == 0 || now >= w.end_ms) {
      w.end_ms = now + window_ms;
      w.count = 0;
    }
    reset = (w.end_ms - now + 999) / 1000;
    if (w.count >= limit) return -1;
    ++w.count;
    return limit - w.count;
  }

 private:
  static constexpr size_t kShards = 16;
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, Window> map;
    uint64_t ops = 0;
  };
  Shard shards_[kShards];
};

Store& store() {
  static Store s;
  return s;
}

class LimitCount final : public Plugin {
 public:
  int64_t count = 0, time_window = 0;
  std::string key = "remote_addr", key_type = "var", group;
  int rejected_code = 503;
  std::string rejected_msg;
  bool show_headers = true;
  std::string prefix;  // resource scope + config digest, or group

  Action access(RequestCtx& ctx) const override {
    std::string k;
    if (key_type == "constant") k = key;
    else if (key_type == "var_combination") k = router::expand_vars(key, ctx);
    else k = ctx.var(key).value_or("");
    if (k.empty()) k = ctx.remote_addr;
    int64_t reset = 0;
    int64_t remaining = store().incoming(prefix + ":" + k, count, time_window, reset);
    if (remaining < 0) {
      if (show_headers) {
        ctx.resp_headers.emplace_back("X-RateLimit-Limit", std::to_string(count));
        ctx.resp_headers.emplace_back("X-RateLimit-Remaining", "0");
        ctx.resp_headers.emplace_back("X-RateLimit-Reset", std::to_string(reset));
      }
      if (rejected_msg.empty()) ctx.respond(rejected_code, "", "");
      else ctx.respond(rejected_code, json_error_msg(rejected_msg));
      return Action::respond;
    }
    if (show_headers) {
      ctx.resp_add.emplace_back("X-RateLimit-Limit", std::to_string(count));
      ctx.resp_add.emplace_back("X-RateLimit-Remaining", std::to_string(remaining));
      ctx.resp_add.emplace_back("X-RateLimit-Reset", std::to_string(reset));
    }
    return Action::next;
  }
};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string& scope) {
  auto p = std::make_shared<LimitCount>();
  Checker c(conf, "limit-count");
  c.only({"count", "time_window", "window_type", "key", "key_type", "group", "policy", "rejected_code",
          "rejected_msg", "allow_degradation", "show_limit_quota_header", "redis_host", "redis_port",
          "redis_password", "redis_database", "redis_timeout", "redis_ssl", "redis_ssl_verify",
          "redis_cluster_nodes", "redis_cluster_name", "sync_interval"});
  p->count = c.integer("count", true, 1).value_or(0);
  if (const json::value* tw = c.get("time_window"); tw && tw->is_string()) {
    try { p->time_window = std::stoll(std::string(tw->as_string())); } catch (...) { p->time_window = 0; }
    if (p->time_window <= 0) c.fail("property \"time_window\" validation failed: expected a positive integer");
  } else {
    p->time_window = c.integer("time_window", true, 1).value_or(0);
  }
  auto wt = c.one_of("window_type", {"fixed", "sliding"}, "fixed");
  if (wt && *wt == "sliding" && !c.failed()) c.fail("window_type sliding is not supported yet");
  p->key = c.str("key", false, 1).value_or("remote_addr");
  p->key_type = c.one_of("key_type", {"var", "var_combination", "constant"}, "var").value_or("var");
  p->group = c.str("group", false, 1).value_or("");
  auto policy = c.one_of("policy", {"local", "redis", "redis-cluster", "redis-sentinel"}, "local");
  if (policy && *policy != "local" && !c.failed()) c.fail("policy " + *policy + " is not supported yet (only local)");
  p->rejected_code = static_cast<int>(c.integer("rejected_code", false, 200, 599).value_or(503));
  p->rejected_msg = c.str("rejected_msg", false, 1).value_or("");
  c.boolean("allow_degradation");
  p->show_headers = c.boolean("show_limit_quota_header").value_or(true);
  p->prefix = p->group.empty() ? fmt::format("{}:{:08x}", scope, http::crc32(json::serialize(conf))) : "group:" + p->group;
  return done(c, p);
}

}  // namespace

extern const PluginDef kLimitCount{"limit-count", 1002, false, &create, nullptr};

}  // namespace holdfast::plugins
