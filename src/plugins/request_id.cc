// request-id (priority 12015): keeps or generates a request id, passes it
// upstream and echoes it in the response.
#include <fmt/format.h>

#include "plugins/common.h"

namespace holdfast::plugins {
namespace {

class RequestId final : public Plugin {
 public:
  std::string header = "X-Request-Id";
  bool include_in_response = true;
  std::string algorithm = "uuid";
  int64_t range_length = 16;
  std::string char_set = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

  Action rewrite(RequestCtx& ctx) const override {
    auto incoming = ctx.request_header(header);
    if (incoming && !incoming->empty()) {
      ctx.request_id = *incoming;
      return Action::next;
    }
    if (algorithm == "range_id" || algorithm == "nanoid") {
      std::string id;
      size_t len = algorithm == "nanoid" ? 21 : static_cast<size_t>(range_length);
      const std::string& cs = algorithm == "nanoid"
                                  ? std::string("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
                                  : char_set;
      for (size_t i = 0; i < len; ++i) id += cs[rng()() % cs.size()];
      ctx.request_id = id;
    } else {
      ctx.request_id = uuid_v4();
    }
    ctx.set_request_header(header, ctx.request_id);
    return Action::next;
  }
  void header_filter(RequestCtx& ctx) const override {
    if (include_in_response && !ctx.request_id.empty()) ctx.set_response_header(header, ctx.request_id);
  }
};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<RequestId>();
  Checker c(conf, "request-id");
  c.only({"header_name", "include_in_response", "algorithm", "range_id"});
  p->header = c.str("header_name", false, 1).value_or("X-Request-Id");
  p->include_in_response = c.boolean("include_in_response").value_or(true);
  p->algorithm = c.one_of("algorithm", {"uuid", "nanoid", "range_id", "ksuid", "uuidv7"}, "uuid").value_or("uuid");
  if (const json::object* r = c.object("range_id")) {
    Checker rc(*r, "range_id");
    p->range_length = rc.integer("length", false, 6).value_or(16);
    p->char_set = rc.str("char_set", false, 6).value_or(p->char_set);
    if (rc.failed()) c.fail("property \"range_id\" validation failed: " + rc.error());
  }
  return done(c, p);
}

}  // namespace

extern const PluginDef kRequestId{"request-id", 12015, false, &create, nullptr};

}  // namespace holdfast::plugins
