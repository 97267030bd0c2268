#include "cloud/gcs/credentials.h"

#include <fmt/format.h>

#include "cloud/credential_source.h"
#include "http/client.h"

namespace holdfast::gcs {
namespace asio = boost::asio;
using cloud::AccessToken;

namespace {

http::Headers metadata_headers() {
  http::Headers h;
  // The metadata server refuses requests without it (and so a redirected or
  // proxied request cannot fetch a token).
  h.emplace_back("Metadata-Flavor", "Google");
  return h;
}

}  // namespace

asio::awaitable<Result<AccessToken>> TokenProvider::fetch() {
  std::string path = credentials_file_;
  if (path.empty()) path = cloud::env("GOOGLE_APPLICATION_CREDENTIALS");
  if (!path.empty()) co_return co_await service_account(path);
  co_return co_await metadata_server();
}

asio::awaitable<Result<AccessToken>> TokenProvider::service_account(const std::string& path) {
  auto text = cloud::read_token_file(path);
  if (!text) co_return Error{"service account: " + text.error()};
  auto key = parse_service_account(*text, path);
  if (!key) co_return Error{"service account: " + key.error()};
  auto url = http::Url::parse(key->token_uri);
  if (!url) co_return Error{"service account: token_uri: " + url.error()};
  auto assertion = jwt_assertion(*key, cloud::now_unix());
  if (!assertion) co_return Error{fmt::format("service account {}: {}", key->client_email, assertion.error())};
  std::string target = url->path;  // not a conditional expression into a coroutine (GCC 12)
  if (target.empty()) target = "/";
  http::HttpClient client(ex_, *url);
  auto r = co_await client.request("POST", target, cloud::token_form_headers(),
                                   token_request_body(*assertion), 10);
  if (!r) co_return Error{fmt::format("service account {}: token endpoint {}", key->client_email, r.error())};
  if (r->status != 200)
    co_return Error{fmt::format("service account {}: the token exchange failed: HTTP {} {}", key->client_email,
                                r->status, cloud::token_endpoint_error(r->body))};
  auto t = cloud::parse_token_answer(r->body, cloud::now_unix());
  if (!t) co_return Error{"service account: " + t.error()};
  t->source = "service-account";
  co_return t;
}

asio::awaitable<Result<AccessToken>> TokenProvider::metadata_server() {
  std::string host = cloud::env("GCE_METADATA_HOST");
  if (host.empty()) host = kDefaultMetadataHost;
  auto url = http::Url::parse("http://" + host);
  if (!url || !url->path.empty()) co_return Error{"metadata server: GCE_METADATA_HOST is not a host[:port]"};
  http::HttpClient client(ex_, *url);
  auto r = co_await client.request("GET", "/computeMetadata/v1/instance/service-accounts/default/token",
                                   metadata_headers(), "", 5);
  if (!r)
    co_return Error{"no credentials: set hmac_access_id and hmac_secret or credentials_file, "
                    "GOOGLE_APPLICATION_CREDENTIALS, or run where the metadata server answers (GCE, GKE Workload "
                    "Identity): " + r.error()};
  if (r->status != 200)
    co_return Error{fmt::format("metadata server: HTTP {} {}", r->status, cloud::token_endpoint_error(r->body))};
  auto t = cloud::parse_token_answer(r->body, cloud::now_unix());
  if (!t) co_return Error{"metadata server: " + t.error()};
  t->source = "metadata-server";
  co_return t;
}

}  // namespace holdfast::gcs
