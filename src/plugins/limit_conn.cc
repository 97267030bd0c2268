// limit-conn (priority 1003): concurrent requests per key, as resty.limit.conn
// with APISIX's local policy. Up to `conn` requests run at once; up to `burst`
// more are let through after a delay of `default_conn_delay` seconds for each
// `conn` already ahead of them; beyond that they are rejected. A request
// counts from its access phase to its very end: the response sent, a tunnel
// (WebSocket, upgrade) closed, the client gone or an error, whichever ends it
// (RequestCtx::at_end). Counts live in the process's `plugin-limit-conn` store
// (plugins/shared_dict.h), shared by every worker and bounded in bytes.
#include <fmt/format.h>

#include <boost/json.hpp>
#include <cmath>

#include "core/log.h"
#include "plugins/common.h"
#include "plugins/limit_common.h"
#include "plugins/shared_dict.h"
#include "router/vars.h"

namespace holdfast::plugins {
namespace {

struct Rule {
  LimitAmount conn, burst;
  std::string key;
};

class LimitConn final : public Plugin {
 public:
  std::vector<Rule> rules;  // the plugin's own conn/burst/key without `rules`
  bool has_rules = false;
  std::string key_type = "var";
  double default_conn_delay = 0;
  int rejected_code = 503;
  std::string rejected_msg;
  bool allow_degradation = false;
  std::string prefix;  // resource scope + config digest
  SharedDict* dict = nullptr;

  // resty.limit.conn's incoming(key, commit = true): the connections of the
  // key with this one (-1: rejected, nothing counted; -2: no room for the key).
  int64_t incoming(std::string_view k, int64_t max) const {
    int64_t conn = -2;
    dict->update(k, limit_now_ms(), [&](SharedDict::Slot& s, bool) {
      if (s.n[0] >= max) {
        conn = -1;
        return;
      }
      conn = ++s.n[0];
      s.expire_ms = 0;  // held until its requests leave
    });
    return conn;
  }

  Action fail(RequestCtx& ctx, const std::string& why) const {
    log::error("failed to get limit conn rules: {}", why);
    if (allow_degradation) return Action::next;
    ctx.respond(500, "", "");
    return Action::respond;
  }

  Action access(RequestCtx& ctx) const override {
    struct Limits {
      int64_t conn, burst;
      std::string key;
    };
    // As APISIX's get_rules: the plugin's own conn and burst must resolve;
    // a rule of the list that does not resolve (or whose key names no
    // variable that is set) is left out.
    std::vector<Limits> todo;
    std::string last_error;
    for (const Rule& r : rules) {
      auto conn = resolve_amount(r.conn, ctx, false, true);
      auto burst = conn ? resolve_amount(r.burst, ctx, true, true) : Result<int64_t>(Error{conn.error()});
      if (!burst) {
        if (!has_rules) return fail(ctx, burst.error());
        continue;
      }
      Limits l{*conn, *burst, {}};
      if (has_rules) {
        size_t n = 0;
        l.key = router::resolve_var(r.key, ctx, &n);
        if (n == 0) continue;
      } else {
        l.key = limit_key(ctx, r.key, key_type);
      }
      todo.push_back(std::move(l));
    }
    if (todo.empty()) return fail(ctx, "no rule applies");
    for (const Limits& l : todo) {
      std::string full = prefix + ":" + l.key;
      const int64_t conn = incoming(full, l.conn + l.burst);
      if (conn == -1) {
        if (rejected_msg.empty())
          ctx.respond(rejected_code, "", "");
        else
          ctx.respond(rejected_code, json_error_msg(rejected_msg));
        return Action::respond;  // what earlier rules counted leaves with the request
      }
      if (conn < 0) return no_memory(ctx, *dict, "limit conn", allow_degradation);
      // Counted: it leaves when the request ends, however it ends. The dict
      // lives as long as the process, so the action needs no plugin.
      ctx.at_end.add([d = dict, k = std::move(full)] { leave(*d, k); });
      if (conn > l.conn) ctx.delay_seconds += default_conn_delay * static_cast<double>((conn - 1) / l.conn);
    }
    return Action::next;
  }

  // resty.limit.conn's leaving. A key the dict pushed out meanwhile (it was
  // full) is left alone, never counted below zero; an idle key expires at
  // once, so that its entry is reclaimed before any that still limits.
  static void leave(SharedDict& d, std::string_view k) {
    const int64_t now = limit_now_ms();
    d.update_existing(k, now, [&](SharedDict::Slot& s, bool fresh) {
      if (fresh || s.n[0] <= 1) {
        s.n[0] = 0;
        s.expire_ms = now;
        return;
      }
      --s.n[0];
    });
  }
};

// conn (> 0) and burst (>= 0): an integer or a string, APISIX's oneOf.
bool read_amount(Checker& c, const json::object& o, const char* k, bool allow_zero, LimitAmount& out,
                 const std::string& where) {
  auto it = o.find(k);
  if (it == o.end()) return false;
  auto a = parse_limit_amount(it->value(), allow_zero);
  if (!a) {
    c.fail(fmt::format("{}property \"{}\" validation failed: value should match only one schema, but matches none",
                       where, k));
    return false;
  }
  out = std::move(*a);
  return true;
}

// APISIX's schema leaves other fields open: they are warned about and
// ignored. Only the local policy is implemented (another is refused by
// value), so the redis settings are ignored too, with a warning naming them.
const FieldRules kFields{
    .implemented = {"conn", "burst", "default_conn_delay", "only_use_default_delay", "key", "key_type", "policy",
                    "rejected_code", "rejected_msg", "allow_degradation", "rules"},
    .ignored = {"redis_host", "redis_port", "redis_username", "redis_password", "redis_database", "redis_timeout",
                "redis_ssl", "redis_ssl_verify", "redis_cluster_nodes", "redis_cluster_name", "redis_cluster_ssl",
                "redis_cluster_ssl_verify", "keepalive_timeout", "keepalive_pool", "key_ttl"}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string& scope) {
  auto p = std::make_shared<LimitConn>();
  Checker c(conf, "limit-conn");
  c.only(kFields.implemented);
  Rule own;
  read_amount(c, conf, "conn", false, own.conn, "");
  if (!c.failed()) read_amount(c, conf, "burst", true, own.burst, "");
  p->default_conn_delay = c.number("default_conn_delay", false, 0, true).value_or(0);
  // Accepted, and without effect as in APISIX 3.x: its limiter is made anew
  // for every request, so the average latency it would learn is never kept,
  // and each delay is default_conn_delay times the connections ahead.
  c.boolean("only_use_default_delay");
  own.key = c.str("key").value_or("");
  p->key_type = c.one_of("key_type", {"var", "var_combination"}, "var").value_or("var");
  auto policy = c.one_of("policy", {"local", "redis", "redis-cluster"}, "local");
  p->rejected_code = static_cast<int>(c.integer("rejected_code", false, 200, 599).value_or(503));
  p->rejected_msg = c.str("rejected_msg", false, 1).value_or("");
  p->allow_degradation = c.boolean("allow_degradation").value_or(false);
  const json::array* rules = c.array("rules");
  if (rules) {
    for (size_t i = 0; i < rules->size() && !c.failed(); ++i) {
      const std::string where =
          fmt::format("property \"rules\" validation failed: failed to validate item {}: ", i + 1);
      if (!(*rules)[i].is_object()) {
        c.fail(where + "wrong type: expected object, got " + model::type_name((*rules)[i]));
        break;
      }
      const json::object& ro = (*rules)[i].as_object();
      Rule r;
      read_amount(c, ro, "conn", false, r.conn, where);
      if (!c.failed()) read_amount(c, ro, "burst", true, r.burst, where);
      Checker rc(ro, "rules");
      r.key = rc.str("key").value_or("");
      if (rc.failed() && !c.failed()) c.fail(where + rc.error());
      for (const char* k : {"conn", "burst", "key"})
        if (!ro.contains(k) && !c.failed()) c.fail(where + fmt::format("property \"{}\" is required", k));
      p->rules.push_back(std::move(r));
    }
    p->has_rules = true;
  }
  if (!c.failed()) {
    // APISIX's oneOf: {conn, burst, default_conn_delay, key} or
    // {default_conn_delay, rules}.
    const bool own_ok = c.has("conn") && c.has("burst") && c.has("default_conn_delay") && c.has("key");
    const bool rules_ok = c.has("default_conn_delay") && rules;
    if (own_ok == rules_ok)
      c.fail(fmt::format("value should match only one schema, but matches {}", own_ok ? "both" : "none"));
  }
  if (policy && *policy != "local" && !c.failed()) c.fail("policy " + *policy + " is not supported yet (only local)");
  if (!rules) p->rules.push_back(std::move(own));
  p->prefix = limit_scope(scope, conf);
  p->dict = &shared_dict("plugin-limit-conn");
  return done(c, p);
}

}  // namespace

extern const PluginDef kLimitConn{"limit-conn", 1003, false, &create, nullptr, nullptr, &kFields};

}  // namespace holdfast::plugins
