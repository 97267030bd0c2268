#include "plugins/auth.h"

#include <fmt/format.h>
#include <openssl/crypto.h>

#include "core/log.h"
#include "http/control_server.h"
#include "model/resources.h"

namespace holdfast::plugins {

void attach_consumer(RequestCtx& ctx, const Consumer& consumer) {
  ctx.consumer = &consumer;
  const auto& conf = *consumer.conf;
  ctx.set_request_header("X-Consumer-Username", conf.username);
  ctx.set_request_header("X-Credential-Identifier", conf.credential_id);
  ctx.set_request_header("X-Consumer-Custom-ID", conf.custom_id);
}

const Consumer* anonymous_consumer(const RequestCtx& ctx, const std::string& name) {
  if (!ctx.consumers || name.find("/credentials/") != std::string::npos) return nullptr;
  auto it = ctx.consumers->by_name.find(name);
  return it == ctx.consumers->by_name.end() ? nullptr : it->second.get();
}

const char* authenticate_or_anonymous(RequestCtx& ctx, const Consumer* found, const char* failure,
                                      const std::string& anonymous, std::string_view plugin) {
  if (!found) {
    if (anonymous.empty()) return failure;
    found = anonymous_consumer(ctx, anonymous);
    if (!found) {
      log::error("{} failed to authenticate the request, code: 401. error: failed to get anonymous consumer {}",
                 plugin, anonymous);
      return "Invalid user authorization";
    }
  }
  attach_consumer(ctx, *found);
  return nullptr;
}

std::string check_realm(Checker& c, const char* def) {
  auto r = c.str("realm", false, 1);
  if (!r) return def;
  bool ok = r->size() <= 128;
  for (char ch : *r) ok = ok && ch >= 0x20 && ch <= 0x7e && ch != '"' && ch != '\\';
  if (!ok && !c.failed())
    c.fail(fmt::format("property \"realm\" validation failed: failed to match pattern \"{}\" with \"{}\"",
                       "^[\\x20-\\x21\\x23-\\x5B\\\\]-\\x7E]+$", *r));
  return *r;
}

std::optional<std::string> query_arg(std::string_view q, std::string_view name, bool& several) {
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

std::string without_query_arg(std::string_view q, std::string_view name) {
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

bool secret_equal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace holdfast::plugins
