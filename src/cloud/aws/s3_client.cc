#include "cloud/aws/s3_client.h"

#include <fmt/format.h>

#include <random>

#include "cloud/aws/xml.h"
#include "cloud/http_store.h"
#include "core/log.h"

namespace holdfast::aws {
namespace asio = boost::asio;

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

void S3Client::cancel() {
  cancelled_ = true;
  for (auto& [k, c] : clients_) c->cancel();
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

using cloud::StoreError;
using cloud::StoreErrorKind;

// The store-independent kind of an S3 answer. `conditional`: the request
// carried If-None-Match / If-Match, so a 501 means "no conditional writes here".
StoreErrorKind kind_of(int status, const std::string& code, bool conditional) {
  if (code == "NoSuchBucket") return StoreErrorKind::bucket_not_found;
  if (code == "NoSuchKey" || status == 404) return StoreErrorKind::not_found;
  if (status == 412) return StoreErrorKind::precondition_failed;
  if (status == 501 && conditional) return StoreErrorKind::conditions_unsupported;
  if (code == "SignatureDoesNotMatch" || code == "InvalidAccessKeyId" || code == "ExpiredToken" ||
      code == "InvalidToken" || code == "RequestTimeTooSkewed")
    return StoreErrorKind::credentials;
  if (code == "AccessDenied") return StoreErrorKind::access_denied;
  if (retryable(status, code)) return StoreErrorKind::transient;
  return StoreErrorKind::other;
}

StoreError failure_from(const http::ClientResponse& r, const std::string& method, const std::string& bucket,
                        const std::string& key, const std::string& region, bool conditional) {
  StoreError f;
  f.code = xml_text(r.body, "Code");
  std::string msg = xml_text(r.body, "Message");
  if (f.code.empty()) {
    f.code = r.status == 404 ? "NoSuchKey" : r.status == 403 ? "AccessDenied" : r.status == 412 ? "PreconditionFailed"
                                                                                                 : fmt::format("HTTP{}", r.status);
  }
  f.kind = kind_of(r.status, f.code, conditional);
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
  } else if (f.code == "RequestTimeTooSkewed") {
    f.message = fmt::format("{}: RequestTimeTooSkewed — the request time is too far from the store's clock (more "
                            "than 15 minutes): check this host's clock", what);
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

asio::awaitable<cloud::StoreResult<http::ClientResponse>> S3Client::send(const std::string& method,
                                                                        const std::string& bucket, const std::string& key,
                                                                        const std::string& body, http::Headers extra,
                                                                        bool conditional) {
  cloud::StoreResult<http::ClientResponse> out;
  Target t = target(bucket, key);
  if (t.url.host.empty()) {
    out.error.message = "invalid S3 endpoint " + opts_.endpoint;
    co_return out;
  }
  std::mt19937 rng{std::random_device{}()};
  bool refreshed = false;
  const std::string what = fmt::format("S3 {} s3://{}/{}", method, bucket, key);
  for (int attempt = 1; attempt <= opts_.max_attempts; ++attempt) {
    if (cancelled_) {
      out.error = cloud::cancelled_error(what);
      co_return out;
    }
    auto creds = co_await creds_->get(false);
    if (!creds) {
      out.error = StoreError{StoreErrorKind::no_credentials, "NoCredentials", creds.error()};
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
    if (cancelled_) {
      out.error = cloud::cancelled_error(what);
      co_return out;
    }
    if (!r) {
      out.error = cloud::network_error(what, r.error());
    } else if (r->status < 300 || r->status == 304) {
      out.value = std::move(*r);
      co_return out;
    } else {
      out.error = failure_from(*r, method, bucket, key, opts_.region, conditional);
      if (out.error.code == "ExpiredToken" && !refreshed) {
        // Expired temporary credentials: refresh once and retry at once.
        refreshed = true;
        (void)co_await creds_->get(true);
        --attempt;
        continue;
      }
      if (!retryable(r->status, out.error.code)) co_return out;
    }
    if (attempt == opts_.max_attempts) break;
    co_await cloud::backoff(ex_, attempt, rng);
  }
  co_return out;
}

asio::awaitable<cloud::StoreResult<cloud::StoredObject>> S3Client::get(const std::string& bucket, const std::string& key) {
  co_return cloud::stored_object(co_await send("GET", bucket, key, "", {}, false));
}

asio::awaitable<cloud::StoreResult<std::string>> S3Client::put(const std::string& bucket, const std::string& key,
                                                               const std::string& body, const std::string& content_type,
                                                               cloud::WriteCondition cond) {
  http::Headers extra;
  extra.emplace_back("content-type", content_type);
  if (cond.kind == cloud::WriteCondition::Kind::create_only) extra.emplace_back("if-none-match", "*");
  const bool replace = cond.kind == cloud::WriteCondition::Kind::replace_version;
  const bool quoted = cond.version.size() >= 2 && cond.version.front() == '"' && cond.version.back() == '"';
  auto unquoted = [&] { return cond.version.substr(1, cond.version.size() - 2); };
  if (replace) extra.emplace_back("if-match", quoted && unquoted_if_match_ ? unquoted() : cond.version);
  const bool conditional = cond.kind != cloud::WriteCondition::Kind::none;
  auto r = co_await send("PUT", bucket, key, body, extra, conditional);
  if (!r.ok() && r.error.kind == cloud::StoreErrorKind::precondition_failed && replace && quoted &&
      !unquoted_if_match_) {
    // Ceph radosgw before 17 compares If-Match on a PUT with the ETag
    // without its quotes, so the RFC 9110 form (which AWS takes) always
    // fails there. When the object still has the version named, the refusal
    // was that, not a concurrent writer: say it once and send the bare form
    // from then on (still conditional, so a real race still fails).
    auto now = co_await get(bucket, key);
    if (now.ok() && now.value->version == cond.version) {
      unquoted_if_match_ = true;
      log::info("S3 endpoint {} refuses a quoted ETag in If-Match on PUT (as Ceph radosgw before 17 does); "
                "sending it unquoted", opts_.endpoint.empty() ? "(AWS)" : opts_.endpoint);
      extra.back().second = unquoted();
      r = co_await send("PUT", bucket, key, body, extra, conditional);
    }
  }
  co_return cloud::new_version(std::move(r));
}

}  // namespace holdfast::aws
