#include "cloud/aws/credentials.h"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <ctime>

#include "cloud/aws/xml.h"
#include "cloud/credential_source.h"
#include "core/log.h"
#include "http/client.h"

namespace holdfast::aws {
namespace asio = boost::asio;
namespace json = boost::json;

namespace {

using cloud::env;
using cloud::now_unix;
using cloud::read_token_file;

std::string form_encode(std::string_view s) { return uri_encode(s, false); }

std::string sts_form(const std::string& role_arn, const std::string& session, const std::string& token) {
  return fmt::format("Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn={}&RoleSessionName={}&WebIdentityToken={}",
                     form_encode(role_arn), form_encode(session), form_encode(token));
}

http::Headers form_headers() {
  http::Headers h;
  h.emplace_back("Content-Type", "application/x-www-form-urlencoded");
  h.emplace_back("Accept", "application/xml");
  return h;
}

http::Headers one_header(std::string k, std::string v) {
  http::Headers h;
  h.emplace_back(std::move(k), std::move(v));
  return h;
}

// {"AccessKeyId","SecretAccessKey","Token","Expiration"} (container and IMDS shapes)
Result<Credentials> parse_json_creds(const std::string& body, const char* source) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec || !v.is_object()) return Error{std::string(source) + ": invalid credentials document"};
  const auto& o = v.as_object();
  auto get = [&](const char* k) {
    auto it = o.find(k);
    return it != o.end() && it->value().is_string() ? std::string(it->value().as_string()) : std::string();
  };
  Credentials c;
  c.access_key = get("AccessKeyId");
  c.secret_key = get("SecretAccessKey");
  c.session_token = get("Token");
  c.expires_unix = parse_iso8601(get("Expiration"));
  c.source = source;
  if (c.empty()) return Error{std::string(source) + ": credentials document without keys"};
  return c;
}

}  // namespace

int64_t parse_iso8601(std::string_view s) {
  if (s.size() < 19) return 0;
  std::tm tm{};
  try {
    tm.tm_year = std::stoi(std::string(s.substr(0, 4))) - 1900;
    tm.tm_mon = std::stoi(std::string(s.substr(5, 2))) - 1;
    tm.tm_mday = std::stoi(std::string(s.substr(8, 2)));
    tm.tm_hour = std::stoi(std::string(s.substr(11, 2)));
    tm.tm_min = std::stoi(std::string(s.substr(14, 2)));
    tm.tm_sec = std::stoi(std::string(s.substr(17, 2)));
  } catch (...) {
    return 0;
  }
  return timegm(&tm);
}

CredentialsProvider::CredentialsProvider(asio::any_io_executor ex, CredentialsConfig cfg)
    : ex_(std::move(ex)), cfg_(std::move(cfg)) {}

CredentialsProvider::~CredentialsProvider() = default;

asio::awaitable<Result<Credentials>> CredentialsProvider::get(bool force_refresh) {
  bool fresh = !cached_.empty() && (cached_.expires_unix == 0 || cached_.expires_unix - now_unix() > 300);
  if (fresh && !force_refresh) co_return cached_;
  auto r = co_await resolve();
  if (!r) {
    ++refresh_failures_;
    // One clear line per distinct failure, not one per retry.
    if (r.error() != last_error_) log::error("AWS credentials: {}", r.error());
    last_error_ = r.error();
    // Still-valid cached credentials are better than none.
    if (!cached_.empty() && (cached_.expires_unix == 0 || cached_.expires_unix > now_unix())) co_return cached_;
    co_return r;
  }
  if (!last_error_.empty() || cached_.source != r->source)
    log::info("AWS credentials from {}{}", r->source,
              r->expires_unix ? fmt::format(", valid until unix time {}", r->expires_unix) : std::string());
  last_error_.clear();
  ++refreshes_;
  cached_ = *r;
  co_return cached_;
}

asio::awaitable<Result<Credentials>> CredentialsProvider::resolve() {
  if (!cfg_.access_key.empty() && !cfg_.secret_key.empty()) {
    Credentials c;
    c.access_key = cfg_.access_key;
    c.secret_key = cfg_.secret_key;
    c.source = "config";
    co_return c;
  }
  if (!env("AWS_ACCESS_KEY_ID").empty() && !env("AWS_SECRET_ACCESS_KEY").empty()) {
    Credentials c;
    c.access_key = env("AWS_ACCESS_KEY_ID");
    c.secret_key = env("AWS_SECRET_ACCESS_KEY");
    c.session_token = env("AWS_SESSION_TOKEN");
    c.source = "environment";
    co_return c;
  }
  if (!env("AWS_ROLE_ARN").empty() && !env("AWS_WEB_IDENTITY_TOKEN_FILE").empty()) co_return co_await web_identity();
  if (!env("AWS_CONTAINER_CREDENTIALS_FULL_URI").empty()) co_return co_await container();
  if (env("AWS_EC2_METADATA_DISABLED") != "true") co_return co_await imds();
  co_return Error{"no credentials: set access_key/secret_key, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                  "AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE (IRSA), or run where instance metadata is available"};
}

// IRSA: exchange the projected service-account token (re-read every time:
// Kubernetes rotates it) for temporary credentials at the regional STS.
asio::awaitable<Result<Credentials>> CredentialsProvider::web_identity() {
  auto token = read_token_file(env("AWS_WEB_IDENTITY_TOKEN_FILE"));
  if (!token) co_return Error{"web identity: " + token.error()};
  std::string endpoint = env("AWS_ENDPOINT_URL_STS");
  if (endpoint.empty()) {
    std::string region = cfg_.region.empty() ? env("AWS_REGION") : cfg_.region;
    endpoint = region.empty() ? "https://sts.amazonaws.com" : fmt::format("https://sts.{}.amazonaws.com", region);
  }
  auto url = http::Url::parse(endpoint);
  if (!url) co_return Error{"web identity: AWS_ENDPOINT_URL_STS: " + url.error()};
  std::string session = env("AWS_ROLE_SESSION_NAME");
  if (session.empty()) session = fmt::format("holdfast-{}", now_unix());
  http::HttpClient client(ex_, *url);
  std::string path = url->path.empty() ? "/" : url->path;
  auto r = co_await client.request("POST", path, form_headers(), sts_form(env("AWS_ROLE_ARN"), session, *token), 10);
  if (!r) co_return Error{"web identity: STS " + r.error()};
  if (r->status != 200) {
    std::string code = xml_text(r->body, "Code"), msg = xml_text(r->body, "Message");
    co_return Error{fmt::format("web identity: STS AssumeRoleWithWebIdentity for {} failed: HTTP {} {}: {}",
                                env("AWS_ROLE_ARN"), r->status, code, msg)};
  }
  Credentials c;
  c.access_key = xml_text(r->body, "AccessKeyId");
  c.secret_key = xml_text(r->body, "SecretAccessKey");
  c.session_token = xml_text(r->body, "SessionToken");
  c.expires_unix = parse_iso8601(xml_text(r->body, "Expiration"));
  c.source = "web-identity";
  if (c.empty()) co_return Error{"web identity: STS answer without credentials"};
  co_return c;
}

// The Authorization value for the container credentials endpoint (plain
// function: keeps block-scoped temporaries out of the coroutine frame, which
// GCC 12 mishandles).
static Result<std::string> container_authorization() {
  std::string token_file = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
  if (!token_file.empty()) {
    auto t = read_token_file(token_file);
    if (!t) return Error{"pod identity: " + t.error()};
    return *t;
  }
  return env("AWS_CONTAINER_AUTHORIZATION_TOKEN");
}

asio::awaitable<Result<Credentials>> CredentialsProvider::container() {
  auto url = http::Url::parse(env("AWS_CONTAINER_CREDENTIALS_FULL_URI"));
  if (!url) co_return Error{"pod identity: AWS_CONTAINER_CREDENTIALS_FULL_URI: " + url.error()};
  auto auth = container_authorization();
  if (!auth) co_return Error{auth.error()};
  http::Headers h;
  if (!auth->empty()) h.emplace_back("Authorization", *auth);
  http::HttpClient client(ex_, *url);
  // A named variable: GCC 12 double-frees a conditional-expression temporary
  // passed by value to a coroutine.
  const std::string path = url->path.empty() ? std::string("/") : url->path;
  auto r = co_await client.request("GET", path, h, "", 5);
  if (!r) co_return Error{"pod identity: " + r.error()};
  if (r->status != 200) co_return Error{fmt::format("pod identity: HTTP {}", r->status)};
  co_return parse_json_creds(r->body, "pod-identity");
}

asio::awaitable<Result<Credentials>> CredentialsProvider::imds() {
  std::string base = env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
  if (base.empty()) base = "http://169.254.169.254";
  auto url = http::Url::parse(base);
  if (!url) co_return Error{"instance metadata: " + url.error()};
  http::HttpClient client(ex_, *url);
  auto tok = co_await client.request("PUT", "/latest/api/token", one_header("X-aws-ec2-metadata-token-ttl-seconds", "21600"),
                                     "", 1);
  if (!tok || tok->status != 200) co_return Error{"no credentials found (explicit, environment, web identity, pod identity, instance metadata)"};
  auto role = co_await client.request("GET", "/latest/meta-data/iam/security-credentials/",
                                      one_header("X-aws-ec2-metadata-token", tok->body), "", 1);
  if (!role || role->status != 200 || role->body.empty()) co_return Error{"instance metadata: no IAM role attached"};
  std::string name = role->body.substr(0, role->body.find('\n'));
  auto creds = co_await client.request("GET", "/latest/meta-data/iam/security-credentials/" + name,
                                       one_header("X-aws-ec2-metadata-token", tok->body), "", 2);
  if (!creds || creds->status != 200) co_return Error{"instance metadata: cannot read role credentials"};
  co_return parse_json_creds(creds->body, "instance-metadata");
}

}  // namespace holdfast::aws
