// api-breaker (priority 1005): a circuit breaker on the upstream's status.
// After `unhealthy.failures` responses with an unhealthy status, requests are
// answered with `break_response_code` without reaching the upstream for 2^n
// seconds (n: the trips so far, counted as APISIX counts them), capped at
// `max_breaker_sec`; `healthy.successes` healthy statuses end it all.
// State lives in the bounded store `plugin-api-breaker`, shared by every
// worker (APISIX's shared dict), keyed by route, configuration, host and $uri.
#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>
#include <set>

#include "plugins/common.h"
#include "plugins/limit_common.h"
#include "plugins/shared_dict.h"
#include "router/vars.h"

namespace holdfast::plugins {
namespace {

class ApiBreaker final : public Plugin {
 public:
  int break_code = 0;
  std::optional<std::string> break_body;
  std::vector<std::pair<std::string, std::string>> break_headers;  // values may hold $vars
  int64_t max_breaker_sec = 300;
  std::vector<int64_t> unhealthy_statuses{500};
  int64_t failures = 3;
  std::vector<int64_t> healthy_statuses{200};
  int64_t successes = 3;
  SharedDict* dict = nullptr;
  std::string prefix;  // limit_scope: the route and a digest of this configuration

  // APISIX's three keys are two entries here: "c" holds the unhealthy count
  // (n[0]) and the healthy count (n[1]); "t" the time of the last trip (n[0],
  // seconds), expiring after max_breaker_sec as APISIX's does.
  std::string key(const RequestCtx& ctx, char kind) const {
    std::string k;
    k.reserve(prefix.size() + ctx.host.size() + ctx.uri.size() + 2);
    k.append(prefix).push_back(kind);
    k.append(ctx.host).append("\n").append(ctx.uri);
    return k;
  }

  Action access(RequestCtx& ctx) const override {
    const int64_t now_ms = limit_now_ms();
    int64_t unhealthy = 0, lasttime = -1;
    dict->update_existing(key(ctx, 'c'), now_ms, [&](SharedDict::Slot& s, bool fresh) {
      if (!fresh) unhealthy = s.n[0];
    });
    if (unhealthy <= 0) return Action::next;
    dict->update_existing(key(ctx, 't'), now_ms, [&](SharedDict::Slot& s, bool fresh) {
      if (!fresh) lasttime = s.n[0];
    });
    if (lasttime < 0) return Action::next;
    // APISIX: 2 ^ max(1, floor(count / failures)) seconds, at most
    // max_breaker_sec, compared in whole seconds (ngx.time()).
    const int64_t trips = std::max<int64_t>(1, unhealthy / failures);
    const int64_t breaker_sec =
        trips >= 62 ? max_breaker_sec : std::min<int64_t>(int64_t{1} << trips, max_breaker_sec);
    if (lasttime + breaker_sec < now_ms / 1000) return Action::next;
    if (break_body) {
      ctx.respond(break_code, *break_body, "");
      for (const auto& [k, v] : break_headers) ctx.add_reply_header(k, router::resolve_var(v, ctx));
    } else {
      ctx.respond(break_code, "", "");
    }
    return Action::respond;
  }

  void log(RequestCtx& ctx) const override {
    // Only what an upstream answered (or the 502/504 of one that failed)
    // counts: a response a plugin made has no upstream status in APISIX, and
    // no upstream address here.
    if (ctx.balancer_ip.empty() || ctx.upstream_status <= 0) return;
    const int64_t status = ctx.upstream_status;
    const int64_t now_ms = limit_now_ms();
    auto in = [](const std::vector<int64_t>& v, int64_t s) {
      return std::find(v.begin(), v.end(), s) != v.end();
    };
    if (in(unhealthy_statuses, status)) {
      bool trip = false;
      bool stored = dict->update(key(ctx, 'c'), now_ms, [&](SharedDict::Slot& s, bool) {
        ++s.n[0];
        s.n[1] = 0;  // APISIX deletes the healthy count
        trip = s.n[0] % failures == 0;
      });
      if (trip)
        stored = dict->update(key(ctx, 't'), now_ms, [&](SharedDict::Slot& s, bool) {
          s.n[0] = now_ms / 1000;
          s.expire_ms = now_ms + max_breaker_sec * 1000;
        }) && stored;
      if (!stored) log_no_memory(*dict, "api-breaker");
      return;
    }
    if (!in(healthy_statuses, status)) return;
    bool reset = false;
    dict->update_existing(key(ctx, 'c'), now_ms, [&](SharedDict::Slot& s, bool fresh) {
      if (!fresh) reset = ++s.n[1] >= successes;
    });
    if (reset) {
      dict->erase(key(ctx, 't'));
      dict->erase(key(ctx, 'c'));
    }
  }
};

// An array of status codes within [lo, hi], at least one, each once.
std::vector<int64_t> statuses(Checker& c, const char* key, int64_t lo, int64_t hi) {
  std::vector<int64_t> out;
  const json::array* a = c.array(key, false, 1);
  if (!a) return out;
  for (size_t i = 0; i < a->size(); ++i) {
    const json::value& e = (*a)[i];
    std::string why;
    if (!e.is_int64())
      why = "wrong type: expected integer, got " + model::type_name(e);
    else if (e.as_int64() < lo)
      why = fmt::format("expected {} to be at least {}", e.as_int64(), lo);
    else if (e.as_int64() > hi)
      why = fmt::format("expected {} to be at most {}", e.as_int64(), hi);
    if (!why.empty()) {
      c.fail(fmt::format("property \"{}\" validation failed: failed to validate item {}: {}", key,
                         i + 1, why));
      return {};
    }
    if (auto it = std::find(out.begin(), out.end(), e.as_int64()); it != out.end()) {
      c.fail(fmt::format(
          "property \"{}\" validation failed: expected unique items but items {} and {} are equal",
          key, it - out.begin() + 1, i + 1));
      return {};
    }
    out.push_back(e.as_int64());
  }
  return out;
}

const FieldRules kHeader{.implemented = {"key", "value"}};
const FieldRules kUnhealthy{.implemented = {"http_statuses", "failures"}};
const FieldRules kHealthy{.implemented = {"http_statuses", "successes"}};
const FieldRules kFields{
    .implemented = {"break_response_code", "break_response_body", "break_response_headers",
                    "max_breaker_sec", "unhealthy", "healthy"},
    .nested = {
        {"break_response_headers", &kHeader}, {"unhealthy", &kUnhealthy}, {"healthy", &kHealthy}}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string& scope) {
  auto p = std::make_shared<ApiBreaker>();
  Checker c(conf, "api-breaker");
  p->break_code = static_cast<int>(c.integer("break_response_code", true, 200, 599).value_or(0));
  p->break_body = c.str("break_response_body");
  if (const json::array* hs = c.array("break_response_headers")) {
    for (size_t i = 0; i < hs->size() && !c.failed(); ++i) {
      std::string why;
      if (!(*hs)[i].is_object()) {
        why = "wrong type: expected object, got " + model::type_name((*hs)[i]);
      } else {
        Checker hc((*hs)[i].as_object(), "break_response_headers");
        auto k = hc.str("key", true, 1);
        auto v = hc.str("value", true, 1);
        if (hc.failed())
          why = hc.error();
        else
          p->break_headers.emplace_back(*k, *v);
      }
      if (!why.empty())
        c.fail(fmt::format(
            "property \"break_response_headers\" validation failed: failed to validate item {}: {}",
            i + 1, why));
    }
  }
  p->max_breaker_sec = c.integer("max_breaker_sec", false, 3).value_or(300);
  if (const json::object* u = c.object("unhealthy")) {
    Checker uc(*u, "unhealthy");
    if (uc.has("http_statuses")) p->unhealthy_statuses = statuses(uc, "http_statuses", 500, 599);
    p->failures = uc.integer("failures", false, 1).value_or(3);
    if (uc.failed()) c.fail("property \"unhealthy\" validation failed: " + uc.error());
  }
  if (const json::object* h = c.object("healthy")) {
    Checker hc(*h, "healthy");
    if (hc.has("http_statuses")) p->healthy_statuses = statuses(hc, "http_statuses", 200, 499);
    p->successes = hc.integer("successes", false, 1).value_or(3);
    if (hc.failed()) c.fail("property \"healthy\" validation failed: " + hc.error());
  }
  if (c.failed()) return Error{c.error()};
  p->prefix = limit_scope(scope, conf);
  p->dict = &shared_dict("plugin-api-breaker");
  return std::shared_ptr<const Plugin>(std::move(p));
}

}  // namespace

extern const PluginDef kApiBreaker{"api-breaker", 1005, false, &create, nullptr, nullptr, &kFields};

}  // namespace holdfast::plugins
