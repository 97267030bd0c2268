// key-auth (priority 2500, auth): finds the consumer by an API key taken
// from a header, then the query string.
#include <fmt/format.h>

#include "model/resources.h"
#include "plugins/common.h"

namespace holdfast::plugins {
namespace {

class KeyAuth final : public Plugin {
 public:
  std::string header = "apikey";
  std::string query = "apikey";
  bool hide_credentials = false;
  std::string anonymous_consumer;

  Action rewrite(RequestCtx& ctx) const override {
    std::optional<std::string> key = ctx.request_header(header);
    bool from_header = key.has_value();
    if (!key) key = ctx.var("arg_" + query);
    const auto& index = ctx.consumers->by_credential;
    const plugins::Consumer* consumer = nullptr;
    const char* failure = nullptr;
    if (!key || key->empty()) {
      failure = "Missing API key in request";
    } else {
      auto it = index.find("key-auth");
      if (it != index.end()) {
        auto c = it->second.find(*key);
        if (c != it->second.end()) consumer = c->second;
      }
      if (!consumer) failure = "Invalid API key in request";
    }
    if (!consumer && !anonymous_consumer.empty()) {
      auto it = ctx.consumers->by_name.find(anonymous_consumer);
      if (it != ctx.consumers->by_name.end()) consumer = it->second.get();
      else failure = "Missing related consumer";
    }
    if (!consumer) {
      ctx.respond(401, json_message(failure));
      ctx.add_reply_header("WWW-Authenticate", "apikey realm=\"key\"");
      return Action::respond;
    }
    ctx.consumer = consumer;
    const auto& conf = *consumer->conf;
    ctx.set_request_header("X-Consumer-Username", conf.username);
    if (!conf.credential_id.empty()) ctx.set_request_header("X-Credential-Identifier", conf.credential_id);
    if (!conf.custom_id.empty()) ctx.set_request_header("X-Consumer-Custom-ID", conf.custom_id);
    if (hide_credentials && key) {
      if (from_header) ctx.req_remove.push_back(header);
      else {
        // Drop the key from the query string sent upstream.
        std::string_view q = ctx.req->query;
        std::string out;
        while (!q.empty()) {
          size_t amp = q.find('&');
          std::string_view pair = q.substr(0, amp);
          if (pair.substr(0, pair.find('=')) != query) {
            if (!out.empty()) out += '&';
            out.append(pair);
          }
          if (amp == std::string_view::npos) break;
          q.remove_prefix(amp + 1);
        }
        std::string target = ctx.upstream_target.value_or(std::string(ctx.req->path));
        target = target.substr(0, target.find('?'));
        ctx.set_upstream_target(out.empty() ? target : target + "?" + out);
      }
    }
    return Action::next;
  }
};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<KeyAuth>();
  Checker c(conf, "key-auth");
  c.only({"header", "query", "hide_credentials", "realm", "anonymous_consumer"});
  p->header = c.str("header").value_or("apikey");
  p->query = c.str("query").value_or("apikey");
  p->hide_credentials = c.boolean("hide_credentials").value_or(false);
  p->anonymous_consumer = c.str("anonymous_consumer", false, 1).value_or("");
  c.str("realm");
  return done(c, p);
}

Status check_consumer(const json::object& conf) {
  Checker c(conf, "key-auth");
  c.str("key", true, 1);
  if (c.failed()) return Error{c.error()};
  return {};
}

}  // namespace

extern const PluginDef kKeyAuth{"key-auth", 2500, true, &create, &check_consumer};

}  // namespace holdfast::plugins
