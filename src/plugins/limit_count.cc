// limit-count (priority 1002): fixed-window request counting per key with
// the local policy. Counters live in the process's `plugin-limit-count` store
// (plugins/shared_dict.h), shared by every route and worker, bounded in bytes
// and kept across reloads; keys carry the owning resource and a digest of this
// config, so a reload that leaves the plugin unchanged keeps counting (APISIX:
// key includes the conf version), or the `group`.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <set>

#include "core/log.h"
#include "plugins/common.h"
#include "plugins/limit_common.h"
#include "plugins/shared_dict.h"
#include "router/vars.h"

namespace holdfast::plugins {
namespace {

using Amount = LimitAmount;

// Hundredths of a second as Lua prints APISIX's floor(reset * 100) / 100:
// 6000 -> "60", 5980 -> "59.8", 5987 -> "59.87".
std::string reset_text(int64_t cs) {
  std::string out = std::to_string(cs / 100);
  const int64_t frac = cs % 100;
  if (frac == 0) return out;
  out += frac % 10 == 0 ? fmt::format(".{}", frac / 10) : fmt::format(".{:02}", frac);
  return out;
}


// A rule of the 3.x `rules` list; the plugin's own count/time_window/key
// make the single rule when there is no list.
struct Rule {
  Amount count, time_window;
  std::string key;
  std::string header_prefix;  // rules: its header_prefix, else its 1-based index
};

struct Limits {
  int64_t count = 0, time_window = 0;
  std::string key;
  const std::string* header_prefix = nullptr;
};

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

const FieldRules kMetadataFields{.implemented = {"limit_header", "remaining_header", "reset_header"}};

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
  std::vector<Rule> rules;  // one rule without `rules`
  bool has_rules = false;
  std::string key_type = "var", group;
  int rejected_code = 503;
  std::string rejected_msg;
  bool show_headers = true;
  bool allow_degradation = false;
  std::string prefix;  // resource scope + config digest, or group
  SharedDict* dict = nullptr;

  // Returns remaining (>= 0 when allowed, -1 when rejected, -2 when the key
  // cannot be stored) and, in hundredths of a second, the time until the
  // window resets as APISIX's local counter reports it: the whole window for
  // the request that opens it, otherwise what is left, floored.
  int64_t incoming(std::string_view key, int64_t count, int64_t time_window, int64_t& reset_cs) const {
    const int64_t now = limit_now_ms();
    int64_t remaining = -2;
    dict->update(key, now, [&](SharedDict::Slot& s, bool fresh) {
      // n[0] counts the requests let through; the window starts with its
      // first request (as APISIX's local counter).
      if (fresh) s.expire_ms = now + time_window * 1000;
      reset_cs = fresh ? time_window * 100 : std::max<int64_t>(0, s.expire_ms - now) / 10;
      if (s.n[0] >= count) {
        remaining = -1;
        return;
      }
      ++s.n[0];
      remaining = count - s.n[0];
    });
    return remaining;
  }

  // Rate-limiting headers, named as APISIX names them (construct_rate_limiting_headers):
  // the names from plugin_metadata, a rule's prefix before their first
  // "RateLimit-" (X-RateLimit-Limit -> X-1-RateLimit-Limit).
  void quota_headers(RequestCtx& ctx, const Limits& l, int64_t remaining, int64_t reset_cs) const {
    if (!show_headers) return;
    const LimitCountMetadata& md = metadata_of(ctx);
    auto name = [&](const std::string& base) {
      std::string n(base);
      if (l.header_prefix)
        if (size_t p = n.find("RateLimit-"); p != std::string::npos)
          n.insert(p, *l.header_prefix + "-");
      return n;
    };
    ctx.add_response_header(name(md.limit_header), std::to_string(l.count));
    ctx.add_response_header(name(md.remaining_header), std::to_string(remaining));
    ctx.add_response_header(name(md.reset_header), reset_text(reset_cs));
  }

  Action fail(RequestCtx& ctx, const std::string& why) const {
    log::error("failed to get rate limit rules: {}", why);
    if (allow_degradation) return Action::next;
    ctx.respond(500, "", "");
    return Action::respond;
  }

  Action access(RequestCtx& ctx) const override {
    // As APISIX's get_rules: every rule that applies is resolved first (a
    // count or window that does not resolve fails the request, so a client
    // cannot switch limiting off), then each is counted in turn.
    thread_local std::vector<Limits> todo;
    todo.clear();
    for (const Rule& r : rules) {
      Limits l;
      if (has_rules) {
        // A rule whose key names no variable that is set does not apply.
        size_t n = 0;
        l.key = router::resolve_var(r.key, ctx, &n);
        if (n == 0) continue;
        l.header_prefix = &r.header_prefix;
      } else {
        l.key = limit_key(ctx, r.key, key_type);
      }
      auto count = resolve_amount(r.count, ctx);
      if (!count) return fail(ctx, count.error());
      auto window = resolve_amount(r.time_window, ctx);
      if (!window) return fail(ctx, window.error());
      l.count = *count;
      l.time_window = *window;
      todo.push_back(std::move(l));
    }
    if (todo.empty()) return fail(ctx, "no rule applies");
    for (const Limits& l : todo) {
      // One buffer per worker thread: no allocation per request for the key.
      thread_local std::string full;
      full.assign(prefix).append(":").append(l.key);
      int64_t reset_cs = 0;
      const int64_t remaining = incoming(full, l.count, l.time_window, reset_cs);
      // APISIX answers so when its dict cannot hold the key.
      if (remaining == -2) return no_memory(ctx, *dict, "limit count", allow_degradation, json_error_msg("failed to limit count"));
      if (remaining < 0) {
        quota_headers(ctx, l, 0, reset_cs);
        if (rejected_msg.empty())
          ctx.respond(rejected_code, "", "");
        else
          ctx.respond(rejected_code, json_error_msg(rejected_msg));
        return Action::respond;
      }
      quota_headers(ctx, l, remaining, reset_cs);
    }
    return Action::next;
  }
};

void read_amounts(Checker& c, const json::object& o, Rule& r, const char* where) {
  for (const char* k : {"count", "time_window"}) {
    auto it = o.find(k);
    if (it == o.end()) continue;
    auto a = parse_limit_amount(it->value());
    if (!a) {
      c.fail(
          fmt::format("{}property \"{}\" validation failed: value should match only one schema, "
                      "but matches none",
                      where, k));
      return;
    }
    (std::string_view(k) == "count" ? r.count : r.time_window) = std::move(*a);
  }
}

// Only the local policy is implemented (another is refused by value): the
// redis settings are then ignored by APISIX too, and here with a warning.
const FieldRules kRule{.implemented = {"count", "time_window", "key", "header_prefix"}};
const FieldRules kFields{
    .implemented = {"count", "time_window", "window_type", "key", "key_type", "group", "policy", "rejected_code",
                    "rejected_msg", "allow_degradation", "show_limit_quota_header", "rules"},
    .ignored = {"redis_host", "redis_port", "redis_username", "redis_password", "redis_database", "redis_timeout",
                "redis_ssl", "redis_ssl_verify", "redis_keepalive_timeout", "redis_keepalive_pool",
                "redis_cluster_nodes", "redis_cluster_name", "redis_cluster_ssl", "redis_cluster_ssl_verify",
                "redis_sentinels", "redis_master_name", "redis_role", "redis_connect_timeout", "redis_read_timeout",
                "sentinel_username", "sentinel_password", "sync_interval"},
    .nested = {{"rules", &kRule}}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string& scope) {
  auto p = std::make_shared<LimitCount>();
  Checker c(conf, "limit-count");
  c.only(kFields.implemented);
  Rule own;
  read_amounts(c, conf, own, "");
  auto wt = c.one_of("window_type", {"fixed", "sliding"}, "fixed");
  if (wt && *wt == "sliding" && !c.failed()) c.fail("window_type sliding is not supported yet");
  own.key = c.str("key").value_or("remote_addr");
  p->key_type = c.one_of("key_type", {"var", "var_combination", "constant"}, "var").value_or("var");
  p->group = c.str("group").value_or("");
  auto policy = c.one_of("policy", {"local", "redis", "redis-cluster", "redis-sentinel"}, "local");
  if (policy && *policy != "local" && !c.failed()) c.fail("policy " + *policy + " is not supported yet (only local)");
  p->rejected_code = static_cast<int>(c.integer("rejected_code", false, 200, 599).value_or(503));
  p->rejected_msg = c.str("rejected_msg", false, 1).value_or("");
  p->allow_degradation = c.boolean("allow_degradation").value_or(false);
  p->show_headers = c.boolean("show_limit_quota_header").value_or(true);
  const bool counted = c.has("count") && c.has("time_window");
  const json::array* rules = c.array("rules");
  if (rules) {
    std::set<std::string> keys;
    for (size_t i = 0; i < rules->size() && !c.failed(); ++i) {
      const std::string where =
          fmt::format("property \"rules\" validation failed: failed to validate item {}: ", i + 1);
      if (!(*rules)[i].is_object()) {
        c.fail(where + "wrong type: expected object, got " + model::type_name((*rules)[i]));
        break;
      }
      const json::object& ro = (*rules)[i].as_object();
      Rule r;
      read_amounts(c, ro, r, where.c_str());
      Checker rc(ro, "rules");
      for (const char* k : {"count", "time_window", "key"})
        if (!ro.contains(k) && !c.failed())
          c.fail(where + fmt::format("property \"{}\" is required", k));
      r.key = rc.str("key").value_or("");
      r.header_prefix = rc.str("header_prefix").value_or(std::to_string(i + 1));
      if (rc.failed() && !c.failed()) c.fail(where + rc.error());
      if (!c.failed() && !keys.insert(r.key).second)
        c.fail(fmt::format("duplicate key '{}' in rules", r.key));
      p->rules.push_back(std::move(r));
    }
    p->has_rules = true;
  }
  if (!c.failed()) {
    // APISIX's oneOf: {count, time_window} or {rules}, with its messages.
    if (rules && (c.has("count") || c.has("time_window")))
      c.fail("count/time_window and rules cannot be specified at the same time");
    else if (!rules && !counted)
      c.fail("value should match only one schema, but matches none");
    else if (rules && !p->group.empty())
      c.fail("group and rules cannot be specified at the same time");
  }
  if (!rules) p->rules.push_back(std::move(own));
  p->prefix = p->group.empty() ? limit_scope(scope, conf) : "group:" + p->group;
  p->dict = &shared_dict("plugin-limit-count");
  return done(c, p);
}

}  // namespace

extern const PluginDef kLimitCount{"limit-count", 1002, false, &create, nullptr, &create_metadata, &kFields, &kMetadataFields};

}  // namespace holdfast::plugins
