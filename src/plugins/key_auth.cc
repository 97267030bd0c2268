// key-auth (priority 2500, auth): finds the consumer by an API key taken
// from a header, then the query string.
#include <fmt/format.h>

#include "core/log.h"
#include "http/control_server.h"
#include "model/resources.h"
#include "plugins/common.h"

namespace holdfast::plugins {
namespace {

// The `query` argument as APISIX's core.request.get_uri_args gives it: the
// decoded value; "" for a bare `?apikey`; no value when it is absent. Sent
// twice it is a Lua table there, which matches no key: `several` says so.
std::optional<std::string> query_key(std::string_view q, std::string_view name, bool& several) {
  std::optional<std::string> out;
  several = false;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    size_t eq = pair.find('=');
    if (!pair.empty() && http::url_decode(pair.substr(0, eq)) == name) {
      if (out) several = true;
      out = eq == std::string_view::npos ? std::string() : http::url_decode(pair.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  return out;
}

// The query without the `name` argument. APISIX re-encodes the whole table
// (set_uri_args); the other arguments go on as the client sent them here.
std::string without_arg(std::string_view q, std::string_view name) {
  std::string out;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    if (!pair.empty() && http::url_decode(pair.substr(0, pair.find('='))) != name) {
      if (!out.empty()) out += '&';
      out.append(pair);
    }
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  return out;
}

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
    if (query_key(ctx.query(), query, several)) ctx.set_query(without_arg(ctx.query(), query));
  }

  Action rewrite(RequestCtx& ctx) const override {
    // As APISIX: a header that is present (even empty) is the key; only
    // without it is the query string read.
    std::optional<std::string> key = ctx.request_header(header);
    const bool from_header = key.has_value();
    bool several = false;
    if (!key) key = query_key(ctx.query(), query, several);
    const plugins::Consumer* consumer = nullptr;
    const char* failure = nullptr;
    if (!key) {
      failure = "Missing API key in request";
    } else {
      const auto& index = ctx.consumers->by_credential;
      auto it = index.find("key-auth");
      if (it != index.end() && !several) {
        auto c = it->second.find(*key);
        if (c != it->second.end()) consumer = c->second;
      }
      if (!consumer) failure = "Invalid API key in request";
    }
    if (consumer) {
      if (hide_credentials) {
        if (from_header)
          ctx.remove_request_header(header);
        else
          hide_query_key(ctx);
      }
    } else {
      if (anonymous_consumer.empty()) return reject(ctx, failure);
      // APISIX strips a credential that failed before falling back to the
      // anonymous consumer, from the header and the query string both, so an
      // invalid key never reaches the upstream.
      if (hide_credentials) {
        if (ctx.request_header(header)) ctx.remove_request_header(header);
        hide_query_key(ctx);
      }
      auto it = ctx.consumers->by_name.find(anonymous_consumer);
      if (it == ctx.consumers->by_name.end()) {
        log::error(
            "key-auth failed to authenticate the request, code: 401. error: failed to get "
            "anonymous consumer {}",
            anonymous_consumer);
        return reject(ctx, "Invalid user authorization");
      }
      consumer = it->second.get();
    }
    ctx.consumer = consumer;
    // APISIX's attach_consumer sets these three and clears those it has no
    // value for, so a client cannot pass its own upstream.
    const auto& conf = *consumer->conf;
    ctx.set_request_header("X-Consumer-Username", conf.username);
    ctx.set_request_header("X-Credential-Identifier", conf.credential_id);
    ctx.set_request_header("X-Consumer-Custom-ID", conf.custom_id);
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
  // APISIX's realm schema: 1-128 printable ASCII characters without `"` and
  // `\`, so the value cannot end the quoted string in WWW-Authenticate.
  if (auto r = c.str("realm", false, 1)) {
    bool ok = r->size() <= 128;
    for (char ch : *r) ok = ok && ch >= 0x20 && ch <= 0x7e && ch != '"' && ch != '\\';
    if (!ok && !c.failed())
      c.fail(fmt::format(
          "property \"realm\" validation failed: failed to match pattern \"{}\" with \"{}\"",
          "^[\\x20-\\x21\\x23-\\x5B\\\\]-\\x7E]+$", *r));
    p->realm = *r;
  }
  return done(c, p);
}

Status check_consumer(const json::object& conf) {
  Checker c(conf, "key-auth");
  c.str("key", true, 1);
  if (c.failed()) return Error{c.error()};
  return {};
}

}  // namespace

extern const PluginDef kKeyAuth{"key-auth", 2500, true, &create, &check_consumer, nullptr, &kFields};

}  // namespace holdfast::plugins
