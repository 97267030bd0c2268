// key-auth (priority 2500, auth): finds the consumer by an API key taken
// from a header, then the query string.
#include <fmt/format.h>

#include "http/control_server.h"
#include "model/resources.h"
#include "plugins/auth.h"

namespace holdfast::plugins {
namespace {

const std::string kName = "key-auth";

class KeyAuth final : public Plugin {
 public:
  std::string header = "apikey";
  std::string query = "apikey";
  std::string realm = "key";
  bool hide_credentials = false;
  std::string anonymous_consumer;

  Action reject(RequestCtx& ctx, const char* message) const {
    ctx.respond(401, json_message(message));
    ctx.add_reply_header("WWW-Authenticate", fmt::format("apikey realm=\"{}\"", realm));
    return Action::respond;
  }

  void hide_query_key(RequestCtx& ctx) const {
    bool several = false;
    if (query_arg(ctx.query(), query, several)) ctx.set_query(without_query_arg(ctx.query(), query));
  }

  Action rewrite(RequestCtx& ctx) const override {
    // As APISIX: a header that is present (even empty) is the key; only
    // without it is the query string read.
    std::optional<std::string> key = ctx.request_header(header);
    const bool from_header = key.has_value();
    bool several = false;
    if (!key) key = query_arg(ctx.query(), query, several);
    const plugins::Consumer* consumer = nullptr;
    const char* failure = nullptr;
    if (!key) {
      failure = "Missing API key in request";
    } else {
      if (!several)
        if (const CredentialHit* hit = ctx.consumers->find(kName, *key)) consumer = hit->consumer;
      if (!consumer) failure = "Invalid API key in request";
    }
    if (hide_credentials) {
      if (consumer && from_header) {
        ctx.remove_request_header(header);
      } else if (consumer) {
        hide_query_key(ctx);
      } else if (!anonymous_consumer.empty()) {
        // APISIX strips a credential that failed before falling back to the
        // anonymous consumer, from the header and the query string both, so
        // an invalid key never reaches the upstream.
        if (ctx.request_header(header)) ctx.remove_request_header(header);
        hide_query_key(ctx);
      }
    }
    if (const char* message = authenticate_or_anonymous(ctx, consumer, failure, anonymous_consumer, kName))
      return reject(ctx, message);
    return Action::next;
  }
};

const FieldRules kFields{.implemented = {"header", "query", "hide_credentials", "realm", "anonymous_consumer"}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<KeyAuth>();
  Checker c(conf, "key-auth");
  c.only(kFields.implemented);
  p->header = c.str("header").value_or("apikey");
  p->query = c.str("query").value_or("apikey");
  p->hide_credentials = c.boolean("hide_credentials").value_or(false);
  p->anonymous_consumer = c.str("anonymous_consumer", false, 1).value_or("");
  p->realm = check_realm(c, "key");
  return done(c, p);
}

Status check_consumer(const json::object& conf) {
  Checker c(conf, "key-auth");
  c.str("key", true, 1);
  if (c.failed()) return Error{c.error()};
  return {};
}

}  // namespace

// APISIX's consumer_schema: open, as the route schema is.
const FieldRules kConsumerFields{.implemented = {"key"}};

extern const PluginDef kKeyAuth{"key-auth",      2500,    true, &create, &check_consumer, nullptr, &kFields, nullptr,
                                "key",           nullptr, &kConsumerFields};

}  // namespace holdfast::plugins
