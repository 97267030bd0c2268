#include "cloud/access_token.h"

#include <boost/json.hpp>
#include <algorithm>

#include "cloud/credential_source.h"
#include "core/log.h"

namespace holdfast::cloud {
namespace asio = boost::asio;
namespace json = boost::json;

namespace {

// Seconds (a lifetime or a Unix time) as the endpoint wrote them: a number
// or a string of digits. Anything past 2^40 or negative is 0 (unusable), so
// that neither the conversion nor `now + seconds` can overflow.
constexpr int64_t kMaxSeconds = int64_t{1} << 40;

int64_t as_seconds(const json::value* v) {
  if (!v) return 0;
  if (v->is_int64()) return v->as_int64() > 0 && v->as_int64() <= kMaxSeconds ? v->as_int64() : 0;
  if (v->is_uint64()) return v->as_uint64() <= static_cast<uint64_t>(kMaxSeconds) ? static_cast<int64_t>(v->as_uint64()) : 0;
  if (v->is_double()) {
    const double d = v->as_double();
    return d > 0 && d <= static_cast<double>(kMaxSeconds) ? static_cast<int64_t>(d) : 0;
  }
  if (v->is_string()) {
    const auto& s = v->as_string();
    int64_t n = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return 0;
      n = n * 10 + (c - '0');
      if (n > kMaxSeconds) return 0;
    }
    return n;
  }
  return 0;
}

}  // namespace

http::Headers token_form_headers() {
  http::Headers h;
  h.emplace_back("Content-Type", "application/x-www-form-urlencoded");
  h.emplace_back("Accept", "application/json");
  return h;
}

std::string token_endpoint_error(const std::string& body) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  std::string out;
  if (!ec && v.is_object()) {
    if (auto* e = v.as_object().if_contains("error")) {
      if (e->is_string()) out = std::string(e->as_string());
      else if (e->is_object())
        if (auto* c = e->as_object().if_contains("code"); c && c->is_string()) out = std::string(c->as_string());
    }
  }
  std::string clean;
  for (char c : out.substr(0, 100))
    if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) clean += c;
  return clean.empty() ? "no error code" : clean;
}

Result<AccessToken> parse_token_answer(const std::string& body, int64_t now) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec || !v.is_object()) return Error{"the token endpoint's answer is not a JSON object"};
  const auto& o = v.as_object();
  AccessToken t;
  if (auto* a = o.if_contains("access_token"); a && a->is_string()) t.token = std::string(a->as_string());
  if (t.token.empty()) return Error{"the token endpoint's answer has no access_token"};
  // A token goes into an Authorization header: refuse what could split it.
  for (char c : t.token)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return Error{"the access_token carries a control character"};
  if (auto* tt = o.if_contains("token_type"); tt && tt->is_string() && tt->as_string() != "Bearer" &&
                                              tt->as_string() != "bearer")
    return Error{"the token endpoint's token_type is not Bearer"};
  t.obtained_unix = now;
  if (int64_t on = as_seconds(o.if_contains("expires_on")); on > now) t.expires_unix = on;
  else if (int64_t in = as_seconds(o.if_contains("expires_in")); in > 0) t.expires_unix = now + in;
  if (t.expires_unix == 0) return Error{"the token endpoint's answer has no usable expires_in"};
  // Kept at most a day whatever the endpoint claims: a token the store
  // refuses earlier is replaced then anyway.
  t.expires_unix = std::min(t.expires_unix, now + kMaxLifetime);
  return t;
}

asio::awaitable<Result<std::string>> CachedToken::get(bool force_refresh) {
  const int64_t now = now_unix();
  // Refresh 5 minutes early, or at half the lifetime of a shorter token.
  const int64_t margin = std::min<int64_t>(300, (cached_.expires_unix - cached_.obtained_unix) / 2);
  const bool usable = !cached_.token.empty() && cached_.expires_unix > now;
  // Renewal is not due, or the last attempt failed a moment ago (each
  // attempt may wait out its timeout, and every request of a round would
  // otherwise make one).
  if (usable && !force_refresh && (cached_.expires_unix - now > margin || now < next_attempt_unix_)) {
    std::string t = cached_.token;
    co_return t;
  }
  Result<AccessToken> r = co_await fetch();
  if (!r) {
    ++refresh_failures_;
    // One clear line per distinct failure, not one per retry.
    if (r.error() != last_error_) log::error("{}: {}", what_, r.error());
    last_error_ = r.error();
    next_attempt_unix_ = now_unix() + kRenewRetrySeconds;
    // A still-valid token is better than none.
    if (!cached_.token.empty() && cached_.expires_unix > now) {
      std::string t = cached_.token;
      co_return t;
    }
    co_return Error{r.error()};
  }
  if (!last_error_.empty() || cached_.token.empty())
    log::info("{} from {}, valid until unix time {}", what_, r->source, r->expires_unix);
  last_error_.clear();
  ++refreshes_;
  cached_ = std::move(*r);
  std::string t = cached_.token;
  co_return t;
}

}  // namespace holdfast::cloud
