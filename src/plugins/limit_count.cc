// limit-count (priority 1002): fixed-window request counting per key with
// the local policy. Counters live in the process's `plugin-limit-count` store
// (plugins/shared_dict.h), shared by every route and worker, bounded in bytes
// and kept across reloads; keys carry the owning resource and a digest of this
// config, so a reload that leaves the plugin unchanged keeps counting (APISIX:
// key includes the conf version), or the `group`.
#include <fmt/format.h>

#include <boost/json.hpp>
#include <atomic>
#include <chrono>

#include "core/log.h"
#include "upstream/balancer.h"
#include "plugins/common.h"
#include "plugins/shared_dict.h"
#include "router/vars.h"

namespace holdfast::plugins {
namespace {

int64_t now_ms() {
  // Milliseconds, not whole seconds: a window must last its full length even
  // when it starts just before a second boundary.
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A key too large for the store fails every request that carries it: say so
// at most once a minute, not once per request.
void log_no_memory() {
  static std::atomic<int64_t> next{0};
  int64_t now = now_ms(), due = next.load(std::memory_order_relaxed);
  if (now < due || !next.compare_exchange_strong(due, now + 60000)) return;
  log::error("failed to limit count: no memory (a key is larger than a shard of lua_shared_dict "
             "plugin-limit-count; see holdfast_shared_dict_no_memory_total)");
}

// plugin_metadata for limit-count: the names of the quota headers.
struct LimitCountMetadata final : Metadata {
  std::string limit_header = "X-RateLimit-Limit";
  std::string remaining_header = "X-RateLimit-Remaining";
  std::string reset_header = "X-RateLimit-Reset";
};

const LimitCountMetadata& metadata_of(const RequestCtx& ctx) {
  static const LimitCountMetadata defaults;
  const auto* m = MetadataTable::of<LimitCountMetadata>(ctx, "limit-count");
  return m ? *m : defaults;
}

Result<std::shared_ptr<const Metadata>> create_metadata(const json::object& conf) {
  auto m = std::make_shared<LimitCountMetadata>();
  Checker c(conf, "limit-count metadata");
  // APISIX's metadata schema allows other properties.
  if (auto v = c.str("limit_header", false, 1)) m->limit_header = *v;
  if (auto v = c.str("remaining_header", false, 1)) m->remaining_header = *v;
  if (auto v = c.str("reset_header", false, 1)) m->reset_header = *v;
  if (c.failed()) return Error{c.error()};
  return std::shared_ptr<const Metadata>(std::move(m));
}

class LimitCount final : public Plugin {
 public:
  int64_t count = 0, time_window = 0;
  std::string key = "remote_addr", key_type = "var", group;
  int rejected_code = 503;
  std::string rejected_msg;
  bool show_headers = true;
  bool allow_degradation = false;
  std::string prefix;  // resource scope + config digest, or group
  SharedDict* dict = nullptr;

  // Returns remaining (>= 0 when allowed, -1 when rejected, -2 when the key
  // cannot be stored) and the seconds until the window resets (rounded up).
  int64_t incoming(std::string_view key, int64_t& reset) const {
    const int64_t now = now_ms();
    int64_t remaining = -2;
    dict->update(key, now, [&](SharedDict::Slot& s, bool fresh) {
      // n[0] counts the requests let through; the window starts with its
      // first request (as APISIX's local counter).
      if (fresh) s.expire_ms = now + time_window * 1000;
      reset = (s.expire_ms - now + 999) / 1000;
      if (s.n[0] >= count) {
        remaining = -1;
        return;
      }
      ++s.n[0];
      remaining = count - s.n[0];
    });
    return remaining;
  }

  Action access(RequestCtx& ctx) const override {
    std::string k;
    if (key_type == "constant") k = key;
    else if (key_type == "var_combination") k = router::expand_vars(key, ctx);
    else k = ctx.var(key).value_or("");
    if (k.empty()) k = ctx.remote_addr;
    // One buffer per worker thread: no allocation per request for the key.
    thread_local std::string full;
    full.assign(prefix).append(":").append(k);
    int64_t reset = 0;
    const int64_t remaining = incoming(full, reset);
    if (remaining == -2) {
      // APISIX answers so when its dict cannot hold the key.
      log_no_memory();
      if (allow_degradation) return Action::next;
      ctx.respond(500, json_error_msg("failed to limit count"));
      return Action::respond;
    }
    if (remaining < 0) {
      if (show_headers) {
        const LimitCountMetadata& md = metadata_of(ctx);
        ctx.add_reply_header(md.limit_header, std::to_string(count));
        ctx.add_reply_header(md.remaining_header, "0");
        ctx.add_reply_header(md.reset_header, std::to_string(reset));
      }
      if (rejected_msg.empty()) ctx.respond(rejected_code, "", "");
      else ctx.respond(rejected_code, json_error_msg(rejected_msg));
      return Action::respond;
    }
    if (show_headers) {
      const LimitCountMetadata& md = metadata_of(ctx);
      ctx.add_response_header(md.limit_header, std::to_string(count));
      ctx.add_response_header(md.remaining_header, std::to_string(remaining));
      ctx.add_response_header(md.reset_header, std::to_string(reset));
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
  p->allow_degradation = c.boolean("allow_degradation").value_or(false);
  p->show_headers = c.boolean("show_limit_quota_header").value_or(true);
  p->prefix = p->group.empty() ? fmt::format("{}:{:08x}", scope, upstream::crc32(json::serialize(conf))) : "group:" + p->group;
  p->dict = &shared_dict("plugin-limit-count");
  return done(c, p);
}

}  // namespace

extern const PluginDef kLimitCount{"limit-count", 1002, false, &create, nullptr, &create_metadata};

}  // namespace holdfast::plugins
