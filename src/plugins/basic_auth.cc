// basic-auth (priority 2520, auth): finds the consumer by the username of
// an `Authorization: Basic` header and checks its password (APISIX 3.x,
// apisix/plugins/basic-auth.lua).
#include <fmt/format.h>

#include "core/base64.h"
#include "core/log.h"
#include "plugins/auth.h"

namespace holdfast::plugins {
namespace {

const std::string kName = "basic-auth";

// The consumer's password, compiled once per snapshot.
struct Password final : Credential {
  std::string value;
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string without_spaces(std::string_view s) {
  std::string out;
  for (char c : s)
    if (!is_space(c)) out += c;
  return out;
}

bool iequals_basic(std::string_view s) {
  static constexpr std::string_view kBasic = "basic";
  if (s.size() != kBasic.size()) return false;
  for (size_t i = 0; i < s.size(); ++i)
    if (static_cast<char>(tolower(static_cast<unsigned char>(s[i]))) != kBasic[i]) return false;
  return true;
}

// APISIX's extract_auth_header: the first "basic" (any case) followed by a
// space and at least one character, anywhere in the header, as the regex
// `(?i:basic)\s(.+)` finds it; the rest is base64 of "user:password", split
// at every ':' (only the first two parts count) with spaces removed. Errors
// say what was wrong, never the value.
struct Parsed {
  std::string username, password;
};
std::optional<Parsed> extract(std::string_view header, const char*& why) {
  size_t at = std::string_view::npos;
  for (size_t i = 0; i + 6 < header.size(); ++i) {
    if (iequals_basic(header.substr(i, 5)) && is_space(header[i + 5]) && header[i + 6] != '\n') {
      at = i + 6;
      break;
    }
  }
  if (at == std::string_view::npos) {
    why = "Invalid authorization header format";
    return std::nullopt;
  }
  // `.` stops at a newline (none can be in a header here; kept for the regex).
  std::string_view b64 = header.substr(at);
  b64 = b64.substr(0, b64.find('\n'));
  auto decoded = ngx_decode_base64(b64);
  if (!decoded) {
    why = "Failed to decode authentication header";
    return std::nullopt;
  }
  std::string_view d = *decoded;
  size_t colon = d.find(':');
  if (colon == std::string_view::npos) {
    why = "Split authorization err: invalid decoded data";
    return std::nullopt;
  }
  std::string_view pass = d.substr(colon + 1);
  pass = pass.substr(0, pass.find(':'));
  return Parsed{without_spaces(d.substr(0, colon)), without_spaces(pass)};
}

class BasicAuth final : public Plugin {
 public:
  bool hide_credentials = false;
  std::string realm = "basic";
  std::string anonymous_consumer;

  Action reject(RequestCtx& ctx, const char* message) const {
    ctx.respond(401, json_message(message));
    ctx.add_reply_header("WWW-Authenticate", fmt::format("Basic realm=\"{}\"", realm));
    return Action::respond;
  }

  // The consumer named by the request, or the message APISIX answers with.
  const Consumer* find(const RequestCtx& ctx, const char*& failure) const {
    auto header = ctx.request_header("Authorization");
    if (!header) {
      failure = "Missing authorization in request";
      return nullptr;
    }
    const char* why = nullptr;
    auto parsed = extract(*header, why);
    if (!parsed) {
      log::warn("basic-auth: {}", why);
      failure = "Invalid authorization in request";
      return nullptr;
    }
    failure = "Invalid user authorization";
    const CredentialHit* hit = ctx.consumers ? ctx.consumers->find(kName, parsed->username) : nullptr;
    if (!hit) {
      log::warn("basic-auth: failed to find user: invalid user");
      return nullptr;
    }
    const auto* pw = static_cast<const Password*>(hit->credential.get());
    if (!pw || !secret_equal(pw->value, parsed->password)) return nullptr;
    return hit->consumer;
  }

  Action rewrite(RequestCtx& ctx) const override {
    const char* failure = nullptr;
    const Consumer* consumer = find(ctx, failure);
    if (const char* message = authenticate_or_anonymous(ctx, consumer, failure, anonymous_consumer, kName))
      return reject(ctx, message);
    if (hide_credentials) ctx.remove_request_header("Authorization");
    return Action::next;
  }
};

// APISIX's schema leaves other fields open: they are warned about and ignored.
const FieldRules kFields{.implemented = {"hide_credentials", "realm", "anonymous_consumer"}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<BasicAuth>();
  Checker c(conf, kName);
  p->hide_credentials = c.boolean("hide_credentials").value_or(false);
  p->realm = check_realm(c, "basic");
  p->anonymous_consumer = c.str("anonymous_consumer", false, 1).value_or("");
  return done(c, p);
}

Status check_consumer(const json::object& conf) {
  Checker c(conf, kName);
  c.str("username");
  c.str("password");
  // APISIX checks `required` after the properties.
  if (!c.failed() && !c.has("username")) c.fail("property \"username\" is required");
  if (!c.failed() && !c.has("password")) c.fail("property \"password\" is required");
  if (c.failed()) return Error{c.error()};
  return {};
}

Result<std::shared_ptr<const Credential>> compile_credential(const json::object& conf) {
  if (auto st = check_consumer(conf); !st) return Error{st.error()};
  auto pw = std::make_shared<Password>();
  pw->value = std::string(conf.at("password").as_string());
  return std::shared_ptr<const Credential>(std::move(pw));
}

}  // namespace

// APISIX's consumer_schema: open, as the route schema is.
const FieldRules kConsumerFields{.implemented = {"username", "password"}};

extern const PluginDef kBasicAuth{"basic-auth", 2520, true, &create, &check_consumer, nullptr, &kFields, nullptr, "username",
                                  &compile_credential, &kConsumerFields};

}  // namespace holdfast::plugins
