// consumer-restriction (priority 2400, access): lets a request through or
// not by its consumer's name or group, its route or its service, and per
// consumer by method (APISIX 3.x, apisix/plugins/consumer-restriction.lua).
#include <fmt/format.h>

#include <algorithm>

#include "model/resources.h"
#include "plugins/common.h"

namespace holdfast::plugins {
namespace {

const std::set<std::string> kMethods = {"GET", "POST", "PUT", "DELETE", "PATCH",
                                        "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE"};

class ConsumerRestriction final : public Plugin {
 public:
  std::string type = "consumer_name";
  std::vector<std::string> blacklist, whitelist;
  // allowed_by_methods: a consumer (value) and the methods it may use.
  std::vector<std::pair<std::optional<std::string>, std::vector<std::string>>> allowed_by_methods;
  int rejected_code = 403;  // APISIX sets no maximum; a status line holds three digits
  std::optional<std::string> rejected_msg;

  std::optional<std::string_view> value(const RequestCtx& ctx) const {
    auto some = [](std::string_view v) { return v.empty() ? std::nullopt : std::optional(v); };
    if (type == "route_id") return some(ctx.route_id);
    if (type == "service_id") return some(ctx.service_id);
    if (!ctx.consumer) return std::nullopt;
    if (type == "consumer_group_id") return some(ctx.consumer->conf->group_id);
    return ctx.consumer->conf->username;
  }

  Action reject(RequestCtx& ctx) const {
    ctx.respond(rejected_code, json_message(rejected_msg ? *rejected_msg : fmt::format("The {} is forbidden.", type)));
    return Action::respond;
  }

  // APISIX's is_method_allowed: the first entry for this consumer decides;
  // a consumer without one may use any method.
  bool method_allowed(std::string_view method, std::string_view who) const {
    for (const auto& [user, methods] : allowed_by_methods)
      if (user && *user == who) return std::find(methods.begin(), methods.end(), method) != methods.end();
    return true;
  }

  Action access(RequestCtx& ctx) const override {
    auto v = value(ctx);
    if (!v) {
      ctx.respond(401, json_message(fmt::format("The request is rejected, please check the {} for this request", type)));
      return Action::respond;
    }
    auto in = [&](const std::vector<std::string>& list) { return std::find(list.begin(), list.end(), *v) != list.end(); };
    if (in(blacklist)) return reject(ctx);
    bool whitelisted = false, block = false;
    if (!whitelist.empty()) {
      whitelisted = in(whitelist);
      block = !whitelisted;
    }
    if (!allowed_by_methods.empty() && !whitelisted && !method_allowed(ctx.req->method, *v)) block = true;
    return block ? reject(ctx) : Action::next;
  }
};

// APISIX's schema leaves other fields open: they are warned about and ignored.
const FieldRules kMethodRule{.implemented = {"user", "methods"}};
const FieldRules kFields{.implemented = {"type", "blacklist", "whitelist", "allowed_by_methods", "rejected_code", "rejected_msg"},
                         .nested = {{"allowed_by_methods", &kMethodRule}}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<ConsumerRestriction>();
  Checker c(conf, "consumer-restriction");
  p->type = c.one_of("type", {"consumer_name", "service_id", "route_id", "consumer_group_id"}, "consumer_name")
                .value_or("consumer_name");
  // Lists of strings, at least one (repeats allowed: no uniqueItems here).
  auto strings = [&](const char* key, std::vector<std::string>& out) {
    const json::array* a = c.array(key, false, 1);
    for (size_t i = 0; a && i < a->size() && !c.failed(); ++i) {
      if ((*a)[i].is_string())
        out.emplace_back((*a)[i].as_string());
      else
        c.fail(fmt::format("property \"{}\" validation failed: failed to validate item {}: wrong type: expected string, got {}",
                           key, i + 1, model::type_name((*a)[i])));
    }
  };
  strings("blacklist", p->blacklist);
  strings("whitelist", p->whitelist);
  if (const json::array* a = c.array("allowed_by_methods")) {
    for (size_t i = 0; i < a->size() && !c.failed(); ++i) {
      auto item_fail = [&](const std::string& why) {
        c.fail(fmt::format("property \"allowed_by_methods\" validation failed: failed to validate item {}: {}", i + 1, why));
      };
      const json::object* o = (*a)[i].if_object();
      if (!o) {
        item_fail("wrong type: expected object, got " + model::type_name((*a)[i]));
        break;
      }
      Checker ic(*o, "allowed_by_methods");
      auto user = ic.str("user");
      std::vector<std::string> methods;
      if (const json::array* m = ic.array("methods", false, 1)) {
        for (size_t k = 0; k < m->size() && !ic.failed(); ++k) {
          const json::value& mv = (*m)[k];
          if (!mv.is_string())
            ic.fail(fmt::format("property \"methods\" validation failed: failed to validate item {}: wrong type: expected string, got {}",
                                k + 1, model::type_name(mv)));
          else if (!kMethods.count(std::string(mv.as_string())))
            ic.fail(fmt::format("property \"methods\" validation failed: failed to validate item {}: matches none of the enum values", k + 1));
          else
            methods.emplace_back(mv.as_string());
        }
      }
      if (ic.failed()) {
        item_fail(ic.error());
        break;
      }
      p->allowed_by_methods.emplace_back(std::move(user), std::move(methods));
    }
  }
  p->rejected_code = static_cast<int>(c.integer("rejected_code", false, 200, 999).value_or(403));
  p->rejected_msg = c.str("rejected_msg");
  if (!c.failed() && !c.has("blacklist") && !c.has("whitelist") && !c.has("allowed_by_methods"))
    c.fail("object matches none of the required: [\"blacklist\"] or [\"whitelist\"] or [\"allowed_by_methods\"]");
  return done(c, p);
}

}  // namespace

extern const PluginDef kConsumerRestriction{"consumer-restriction", 2400, false, &create, nullptr, nullptr, &kFields};

}  // namespace holdfast::plugins
