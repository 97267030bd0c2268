// ip-restriction (priority 3000): allows or denies clients by IP/CIDR.
#include "plugins/common.h"
#include "router/ipmatch.h"

namespace holdfast::plugins {
namespace {

class IpRestriction final : public Plugin {
 public:
  router::IpMatcher list;
  bool whitelist = true;
  std::string message = "Your IP address is not allowed";
  int code = 403;

  Action access(RequestCtx& ctx) const override {
    bool in = list.match(ctx.remote_addr);
    if (in == whitelist) return Action::next;
    ctx.respond(code, json_message(message));
    return Action::respond;
  }
};

const FieldRules kFields{.implemented = {"whitelist", "blacklist", "message", "response_code"}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<IpRestriction>();
  Checker c(conf, "ip-restriction");
  c.only(kFields.implemented);
  auto w = c.str_array("whitelist", 1);
  auto b = c.str_array("blacklist", 1);
  if (!c.failed() && w.has_value() == b.has_value()) c.fail(std::string("value should match only one schema, but matches ") + (w ? "both schemas 1 and 2" : "none"));
  p->whitelist = w.has_value();
  if (!c.failed()) {
    auto m = router::IpMatcher::compile(w ? *w : *b);
    if (!m) c.fail(m.error());
    else p->list = std::move(*m);
  }
  p->message = c.str("message", false, 1, 1024).value_or(p->message);
  p->code = static_cast<int>(c.integer("response_code", false, 403, 404).value_or(403));
  return done(c, p);
}

}  // namespace

extern const PluginDef kIpRestriction{"ip-restriction", 3000, false, &create, nullptr, nullptr, &kFields};

}  // namespace holdfast::plugins
