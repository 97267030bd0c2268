#include "cloud/azure/identity.h"

#include <fmt/format.h>

#include <cctype>

#include "cloud/aws/sigv4.h"
#include "cloud/credential_source.h"
#include "core/log.h"
#include "http/client.h"

namespace holdfast::azure {
namespace asio = boost::asio;

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

std::string token_form(const std::string& client_id, const std::string& assertion) {
  return fmt::format(
      "client_id={}&scope={}&grant_type=client_credentials"
      "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={}",
      aws::uri_encode(client_id, false), aws::uri_encode(kStorageScope, false), aws::uri_encode(assertion, false));
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

}  // namespace

asio::awaitable<Result<AccessToken>> TokenProvider::fetch() {
  if (!env("AZURE_FEDERATED_TOKEN_FILE").empty()) co_return co_await workload_identity();
  co_return co_await managed_identity();
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
  auto r = co_await client.request("POST", target, cloud::token_form_headers(), token_form(client_id, *assertion), 10);
  if (!r) co_return Error{"workload identity: token endpoint " + r.error()};
  if (r->status != 200)
    co_return Error{fmt::format("workload identity: the token exchange for client {} in tenant {} failed: HTTP {} {}",
                                client_id, tenant, r->status, cloud::token_endpoint_error(r->body))};
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
    co_return Error{fmt::format("managed identity: IMDS answered HTTP {} {}", r->status, cloud::token_endpoint_error(r->body))};
  auto t = parse_token_answer(r->body, now_unix());
  if (!t) co_return Error{"managed identity: " + t.error()};
  t->source = "managed-identity";
  co_return t;
}

}  // namespace holdfast::azure
