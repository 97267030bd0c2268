#include "cloud/azure/identity.h"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <cctype>

#include "cloud/aws/sigv4.h"
#include "cloud/credential_source.h"
#include "core/log.h"
#include "http/client.h"

namespace holdfast::azure {
namespace asio = boost::asio;
namespace json = boost::json;

namespace {

using cloud::env;
using cloud::now_unix;

// The federated token (AZURE_FEDERATED_TOKEN_FILE); an empty file is an error.
Result<std::string> federated_token(const std::string& path) {
  auto t = cloud::read_token_file(path);
  if (!t) return Error{"AZURE_FEDERATED_TOKEN_FILE: " + t.error()};
  if (t->empty()) return Error{"AZURE_FEDERATED_TOKEN_FILE " + path + " is empty"};
  return t;
}

// The error an identity endpoint names, without control characters and
// never the body as a whole (it may echo what was sent).
std::string endpoint_error(const std::string& body) {
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

std::string token_form(const std::string& client_id, const std::string& assertion) {
  return fmt::format(
      "client_id={}&scope={}&grant_type=client_credentials"
      "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={}",
      aws::uri_encode(client_id, false), aws::uri_encode(kStorageScope, false), aws::uri_encode(assertion, false));
}

http::Headers form_headers() {
  http::Headers h;
  h.emplace_back("Content-Type", "application/x-www-form-urlencoded");
  h.emplace_back("Accept", "application/json");
  return h;
}

http::Headers metadata_headers() {
  http::Headers h;
  h.emplace_back("Metadata", "true");
  return h;
}

std::string imds_target(const std::string& base_path, const std::string& client_id) {
  std::string t = base_path + "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=" +
                  aws::uri_encode(kStorageResource, false);
  if (!client_id.empty()) t += "&client_id=" + aws::uri_encode(client_id, false);
  return t;
}

int64_t as_seconds(const json::value* v) {
  if (!v) return 0;
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64()) return static_cast<int64_t>(v->as_uint64());
  if (v->is_double()) return static_cast<int64_t>(v->as_double());
  if (v->is_string()) {
    const auto& s = v->as_string();
    int64_t n = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return 0;
      n = n * 10 + (c - '0');
      if (n > (int64_t{1} << 40)) return 0;
    }
    return n;
  }
  return 0;
}

}  // namespace

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
  return t;
}

asio::awaitable<Result<std::string>> TokenProvider::get(bool force_refresh) {
  const int64_t now = now_unix();
  // Refresh 5 minutes early, or at half the lifetime of a shorter token.
  const int64_t margin = std::min<int64_t>(300, (cached_.expires_unix - cached_.obtained_unix) / 2);
  if (!cached_.token.empty() && !force_refresh && cached_.expires_unix - now > margin) {
    std::string t = cached_.token;
    co_return t;
  }
  // Not a conditional expression around co_await (GCC 12).
  Result<AccessToken> r = Error{""};
  if (!env("AZURE_FEDERATED_TOKEN_FILE").empty()) r = co_await workload_identity();
  else r = co_await managed_identity();
  if (!r) {
    ++refresh_failures_;
    // One clear line per distinct failure, not one per retry.
    if (r.error() != last_error_) log::error("Azure credentials: {}", r.error());
    last_error_ = r.error();
    // A still-valid token is better than none.
    if (!cached_.token.empty() && cached_.expires_unix > now) {
      std::string t = cached_.token;
      co_return t;
    }
    co_return Error{r.error()};
  }
  if (!last_error_.empty() || cached_.token.empty())
    log::info("Azure credentials from {}, valid until unix time {}", r->source, r->expires_unix);
  last_error_.clear();
  ++refreshes_;
  cached_ = std::move(*r);
  std::string t = cached_.token;
  co_return t;
}

asio::awaitable<Result<AccessToken>> TokenProvider::workload_identity() {
  const std::string client_id = env("AZURE_CLIENT_ID"), tenant = env("AZURE_TENANT_ID");
  if (client_id.empty() || tenant.empty())
    co_return Error{"workload identity: AZURE_FEDERATED_TOKEN_FILE is set but AZURE_CLIENT_ID or AZURE_TENANT_ID is not"};
  for (char c : tenant)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.')
      co_return Error{"workload identity: AZURE_TENANT_ID is not a tenant id or domain"};
  auto assertion = federated_token(env("AZURE_FEDERATED_TOKEN_FILE"));
  if (!assertion) co_return Error{"workload identity: " + assertion.error()};
  std::string authority = env("AZURE_AUTHORITY_HOST");
  if (authority.empty()) authority = "https://login.microsoftonline.com/";
  auto url = http::Url::parse(authority);
  if (!url) co_return Error{"workload identity: AZURE_AUTHORITY_HOST: " + url.error()};
  std::string base = url->path;
  while (!base.empty() && base.back() == '/') base.pop_back();
  const std::string target = base + "/" + tenant + "/oauth2/v2.0/token";
  http::HttpClient client(ex_, *url);
  auto r = co_await client.request("POST", target, form_headers(), token_form(client_id, *assertion), 10);
  if (!r) co_return Error{"workload identity: token endpoint " + r.error()};
  if (r->status != 200)
    co_return Error{fmt::format("workload identity: the token exchange for client {} in tenant {} failed: HTTP {} {}",
                                client_id, tenant, r->status, endpoint_error(r->body))};
  auto t = parse_token_answer(r->body, now_unix());
  if (!t) co_return Error{"workload identity: " + t.error()};
  t->source = "workload-identity";
  co_return t;
}

asio::awaitable<Result<AccessToken>> TokenProvider::managed_identity() {
  std::string host = env("AZURE_POD_IDENTITY_AUTHORITY_HOST");
  if (host.empty()) host = "http://169.254.169.254";
  auto url = http::Url::parse(host);
  if (!url) co_return Error{"managed identity: AZURE_POD_IDENTITY_AUTHORITY_HOST: " + url.error()};
  std::string base = url->path;
  while (!base.empty() && base.back() == '/') base.pop_back();
  http::HttpClient client(ex_, *url);
  auto r = co_await client.request("GET", imds_target(base, env("AZURE_CLIENT_ID")), metadata_headers(), "", 5);
  if (!r)
    co_return Error{"no credentials: set account_key or sas_token, Azure Workload Identity (AZURE_FEDERATED_TOKEN_FILE, "
                    "AZURE_CLIENT_ID, AZURE_TENANT_ID), or run where the instance metadata service answers (" +
                    r.error() + ")"};
  if (r->status != 200)
    co_return Error{fmt::format("managed identity: IMDS answered HTTP {} {}", r->status, endpoint_error(r->body))};
  auto t = parse_token_answer(r->body, now_unix());
  if (!t) co_return Error{"managed identity: " + t.error()};
  t->source = "managed-identity";
  co_return t;
}

}  // namespace holdfast::azure
