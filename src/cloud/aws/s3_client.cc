#include "cloud/aws/s3_client.h"

#include <fmt/format.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <random>

#include "cloud/aws/xml.h"
#include "core/log.h"

namespace holdfast::aws {
namespace asio = boost::asio;
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

S3Client::S3Client(asio::any_io_executor ex, S3Options opts, std::shared_ptr<CredentialsProvider> creds)
    : ex_(std::move(ex)), opts_(std::move(opts)), creds_(std::move(creds)) {}

S3Client::~S3Client() = default;

S3Client::Target S3Client::target(const std::string& bucket, const std::string& key) const {
  Target t;
  if (!opts_.endpoint.empty()) {
    // S3-compatible stores and tests: path-style on the given endpoint.
    auto u = http::Url::parse(opts_.endpoint);
    t.url = u ? *u : http::Url{};
    std::string base = t.url.path;
    while (!base.empty() && base.back() == '/') base.pop_back();
    t.path = base + "/" + bucket + "/" + key;
  } else if (bucket.find('.') != std::string::npos) {
    // Dotted bucket names break the wildcard certificate: path-style.
    t.url.scheme = "https";
    t.url.host = fmt::format("s3.{}.amazonaws.com", opts_.region);
    t.url.port = 443;
    t.path = "/" + bucket + "/" + key;
  } else {
    t.url.scheme = "https";
    t.url.host = fmt::format("{}.s3.{}.amazonaws.com", bucket, opts_.region);
    t.url.port = 443;
    t.path = "/" + key;
  }
  return t;
}

http::HttpClient& S3Client::client_for(const http::Url& url) {
  std::string k = url.scheme + "://" + url.authority();
  auto& c = clients_[k];
  if (!c) c = std::make_unique<http::HttpClient>(ex_, url);
  return *c;
}

namespace {

bool retryable(int status, const std::string& code) {
  return status == 0 || status >= 500 || status == 429 || code == "SlowDown" || code == "Throttling" ||
         code == "RequestTimeout" || code == "InternalError" || code == "ServiceUnavailable";
}

S3Failure failure_from(const http::ClientResponse& r, const std::string& method, const std::string& bucket,
                       const std::string& key, const std::string& region) {
  S3Failure f;
  f.http_status = r.status;
  f.code = xml_text(r.body, "Code");
  std::string msg = xml_text(r.body, "Message");
  if (f.code.empty()) {
    f.code = r.status == 404 ? "NoSuchKey" : r.status == 403 ? "AccessDenied" : r.status == 412 ? "PreconditionFailed"
                                                                                                 : fmt::format("HTTP{}", r.status);
  }
  std::string what = fmt::format("S3 {} s3://{}/{}", method, bucket, key);
  if (f.code == "PermanentRedirect" || f.code == "AuthorizationHeaderMalformed" || f.code == "IllegalLocationConstraintException") {
    std::string right = xml_text(r.body, "Region");
    if (right.empty()) right = r.header("x-amz-bucket-region");
    f.message = fmt::format("{}: {} — the bucket is in another region{} (configured: {})", what, f.code,
                            right.empty() ? "" : " (" + right + ")", region);
  } else if (f.code == "SignatureDoesNotMatch") {
    f.message = fmt::format("{}: SignatureDoesNotMatch — the secret key does not match the access key", what);
  } else if (f.code == "InvalidAccessKeyId") {
    f.message = fmt::format("{}: InvalidAccessKeyId — unknown access key", what);
  } else if (f.code == "ExpiredToken") {
    f.message = fmt::format("{}: ExpiredToken — temporary credentials expired", what);
  } else {
    f.message = fmt::format("{}: HTTP {} {}{}", what, r.status, f.code, msg.empty() ? "" : ": " + msg);
  }
  return f;
}

// Builds the signed header list outside the coroutine bodies.
http::Headers signed_headers(const Signed& s, const std::string& host, const http::Headers& extra) {
  http::Headers h;
  for (const auto& kv : extra) h.push_back(kv);
  for (const auto& kv : s.headers) h.push_back(kv);
  (void)host;
  return h;
}

}  // namespace

asio::awaitable<S3Result<http::ClientResponse>> S3Client::send(const std::string& method, const std::string& bucket,
                                                               const std::string& key, const std::string& body,
                                                               http::Headers extra) {
  S3Result<http::ClientResponse> out;
  Target t = target(bucket, key);
  if (t.url.host.empty()) {
    out.failure.message = "invalid S3 endpoint " + opts_.endpoint;
    co_return out;
  }
  std::mt19937 rng{std::random_device{}()};
  bool refreshed = false;
  for (int attempt = 1; attempt <= opts_.max_attempts; ++attempt) {
    auto creds = co_await creds_->get(false);
    if (!creds) {
      out.failure = S3Failure{0, "NoCredentials", creds.error()};
      co_return out;
    }
    SignInput in;
    in.method = method;
    in.path = t.path;
    in.headers.emplace_back("host", t.url.authority());
    for (const auto& kv : extra) in.headers.push_back(kv);
    in.payload_hash = sha256_hex(body);
    SignOptions so;
    so.region = opts_.region;
    so.service = "s3";
    so.amz_date = amz_date_now();
    so.normalize_path = false;
    so.add_content_sha256 = true;
    Signed s = sign(in, *creds, so);
    http::HttpClient& c = client_for(t.url);
    auto r = co_await c.request(method, s.canonical_uri, signed_headers(s, t.url.authority(), extra), body, opts_.timeout);
    if (!r) {
      out.failure = S3Failure{0, "NetworkError", fmt::format("S3 {} s3://{}/{}: {}", method, bucket, key, r.error())};
    } else if (r->status < 300 || r->status == 304) {
      out.value = std::move(*r);
      co_return out;
    } else {
      out.failure = failure_from(*r, method, bucket, key, opts_.region);
      if (out.failure.code == "ExpiredToken" && !refreshed) {
        // Expired temporary credentials: refresh once and retry at once.
        refreshed = true;
        (void)co_await creds_->get(true);
        --attempt;
        continue;
      }
      if (!retryable(r->status, out.failure.code)) co_return out;
    }
    if (attempt == opts_.max_attempts) break;
    // exponential backoff with full jitter: 100 ms, 200 ms, 400 ms ...
    int64_t cap = 100LL << (attempt - 1);
    asio::steady_timer timer(ex_);
    timer.expires_after(std::chrono::milliseconds(std::uniform_int_distribution<int64_t>(cap / 2, cap)(rng)));
    co_await timer.async_wait(tok);
  }
  co_return out;
}

asio::awaitable<S3Result<S3Object>> S3Client::get(const std::string& bucket, const std::string& key) {
  S3Result<S3Object> out;
  auto r = co_await send("GET", bucket, key, "", {});
  if (!r.ok()) {
    out.failure = r.failure;
    co_return out;
  }
  S3Object o;
  o.status = r.value->status;
  o.body = std::move(r.value->body);
  o.etag = r.value->header("etag");
  out.value = std::move(o);
  co_return out;
}

asio::awaitable<S3Result<std::string>> S3Client::put(const std::string& bucket, const std::string& key,
                                                     const std::string& body, const std::string& content_type,
                                                     PutCondition cond, const std::string& etag) {
  S3Result<std::string> out;
  http::Headers extra;
  extra.emplace_back("content-type", content_type);
  if (cond == PutCondition::if_none_match) extra.emplace_back("if-none-match", "*");
  if (cond == PutCondition::if_match) extra.emplace_back("if-match", etag);
  auto r = co_await send("PUT", bucket, key, body, extra);
  if (!r.ok()) {
    out.failure = r.failure;
    co_return out;
  }
  out.value = r.value->header("etag");
  co_return out;
}

}  // namespace holdfast::aws
