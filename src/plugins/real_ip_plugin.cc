// real-ip (priority 23000): the client address from a variable or
// X-Forwarded-For, for one route, as APISIX's real-ip plugin. Everything after
// its rewrite phase sees it: $remote_addr, ip-restriction, limit keys,
// X-Real-IP / X-Forwarded-For sent upstream and the access log. (The route
// was matched on the address before, as in APISIX.) X-Forwarded-For is
// walked by the same code as nginx_config.http.real_ip_* (proxy/real_ip.h),
// with trusted_addresses in the place of real_ip_from.
#include <fmt/format.h>

#include <boost/json.hpp>

#include "core/config.h"
#include "core/log.h"
#include "plugins/common.h"
#include "proxy/real_ip.h"

namespace holdfast::plugins {
namespace {

class RealIp final : public Plugin {
 public:
  std::string source;
  bool xff = false;
  // For X-Forwarded-For: real_ip_from is trusted_addresses (every address
  // when there is none), recursive only with trusted_addresses (APISIX).
  ClientAddrConfig walk;
  std::optional<router::IpMatcher> trusted;

  Action rewrite(RequestCtx& ctx) const override {
    auto peer = router::IpAddr::parse(ctx.remote_addr);
    if (!peer) return Action::next;
    if (trusted && !trusted->match(*peer)) return Action::next;
    std::optional<router::IpAddr> addr;
    uint16_t port = 0;
    if (xff) {
      if (ctx.req) addr = proxy::real_client_addr(walk, *ctx.req, *peer);
      if (!addr) {
        log::debug("real-ip: no address in X-Forwarded-For");
        return Action::next;
      }
    } else {
      auto v = ctx.var(source);
      if (!v) {
        // APISIX warns; per request that would let clients fill the log.
        log::debug("real-ip: missing real address");
        return Action::next;
      }
      addr = proxy::parse_addr_port(*v);
      if (!addr) {
        log::debug("real-ip: bad address: {}", log::json_escape(*v));
        return Action::next;
      }
      // ip:port or [v6]:port: the port comes along, as APISIX sets it too.
      if (!router::IpAddr::parse(*v)) port = static_cast<uint16_t>(std::stoi(v->substr(v->rfind(':') + 1)));
    }
    ctx.remote_addr = addr->str();
    if (port) ctx.remote_port = port;
    return Action::next;
  }
};

// APISIX's schema leaves other fields open: they are warned about and ignored.
const FieldRules kFields{.implemented = {"trusted_addresses", "source", "recursive"}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<RealIp>();
  Checker c(conf, "real-ip");
  c.only(kFields.implemented);
  // APISIX's schema: at least one item, each an IP or CIDR (duplicates allowed).
  std::optional<std::vector<std::string>> trusted;
  if (const json::array* arr = c.array("trusted_addresses", false, 1)) {
    trusted.emplace();
    for (size_t i = 0; i < arr->size() && !c.failed(); ++i) {
      if (!(*arr)[i].is_string())
        c.fail(fmt::format("property \"trusted_addresses\" validation failed: failed to validate item {}: "
                           "object matches none of the required",
                           i + 1));
      else
        trusted->emplace_back((*arr)[i].as_string());
    }
  }
  p->source = c.str("source", true, 1).value_or("");
  const bool recursive = c.boolean("recursive").value_or(false);
  if (trusted && !c.failed()) {
    for (const auto& a : *trusted)
      if (!model::valid_ip_or_cidr(a) && !c.failed()) c.fail("invalid ip address: " + a);
    if (!c.failed()) {
      auto m = router::IpMatcher::compile(*trusted);
      if (!m) c.fail(m.error());
      else p->trusted = std::move(*m);
    }
  }
  if (c.failed()) return Error{c.error()};
  p->xff = p->source == "http_x_forwarded_for";
  p->walk.real_ip_header = "x-forwarded-for";
  p->walk.real_ip_xff = true;
  p->walk.real_ip_recursive = recursive && p->trusted.has_value();
  if (p->trusted) {
    p->walk.real_ip_from = *p->trusted;
  } else {
    auto all = router::IpMatcher::compile({"0.0.0.0/0", "::/0"});
    if (!all) return Error{all.error()};
    p->walk.real_ip_from = std::move(*all);
  }
  return done(c, p);
}

}  // namespace

extern const PluginDef kRealIp{"real-ip", 23000, false, &create, nullptr, nullptr, &kFields};

}  // namespace holdfast::plugins
