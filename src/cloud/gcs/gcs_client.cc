#include "cloud/gcs/gcs_client.h"

#include <fmt/format.h>

#include "cloud/aws/sigv4.h"
#include "cloud/aws/xml.h"
#include "cloud/store_request.h"

namespace holdfast::gcs {
namespace asio = boost::asio;
using cloud::StoreError;
using cloud::StoreErrorKind;

namespace {

bool retryable(int status, const std::string& code) {
  return status == 0 || status >= 500 || status == 429 || code == "SlowDown" || code == "InternalError" ||
         code == "ServiceUnavailable" || code == "RequestTimeout" || code == "TooManyRequests";
}

// Text from the network for a log line: printable, one line, bounded.
std::string clean(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 200))
    if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) out += c;
  return out;
}

http::Headers bearer_headers(const http::Headers& extra, const std::string& token) {
  http::Headers h = extra;
  h.emplace_back("authorization", "Bearer " + token);
  return h;
}

}  // namespace

http::Headers hmac_headers(const std::string& method, const http::Url& base, const std::string& path,
                           const std::string& body, const http::Headers& extra, const std::string& access_id,
                           const std::string& secret, const std::string& amz_date, std::string& target) {
  aws::SignInput in;
  in.method = method;
  in.path = path;
  in.headers.emplace_back("host", base.authority());
  for (const auto& kv : extra) in.headers.push_back(kv);
  in.payload_hash = aws::sha256_hex(body);
  aws::SignOptions so;
  so.region = kHmacRegion;
  so.service = kHmacService;
  so.amz_date = amz_date;
  so.normalize_path = false;  // object names are taken literally
  so.add_content_sha256 = true;
  aws::Signed s = aws::sign(in, aws::Credentials{access_id, secret, "", 0, "config"}, so);
  target = s.canonical_uri;
  http::Headers h = extra;
  for (const auto& kv : s.headers) h.push_back(kv);
  return h;
}

StoreErrorKind gcs_error_kind(int status, const std::string& code) {
  if (code == "NoSuchBucket") return StoreErrorKind::bucket_not_found;
  if (code == "NoSuchKey" || status == 404) return StoreErrorKind::not_found;
  if (status == 412 || code == "PreconditionFailed") return StoreErrorKind::precondition_failed;
  // A wrong HMAC secret or unknown access id, an expired or revoked token,
  // a skewed clock: the credentials need an operator (or a new token).
  if (status == 401 || code == "SignatureDoesNotMatch" || code == "InvalidAccessKeyId" || code == "InvalidSecurity" ||
      code == "AuthenticationRequired" || code == "ExpiredToken" || code == "InvalidToken" ||
      code == "RequestTimeTooSkewed" || code == "MissingSecurityHeader")
    return StoreErrorKind::credentials;
  if (code == "AccessDenied" || status == 403) return StoreErrorKind::access_denied;
  if (retryable(status, code)) return StoreErrorKind::transient;
  return StoreErrorKind::other;
}

StoreError gcs_error(const http::ClientResponse& r, const std::string& what, bool bearer) {
  StoreError f;
  f.code = clean(aws::xml_text(r.body, "Code"));
  if (f.code.empty())
    f.code = r.status == 404 ? "NoSuchKey" : r.status == 412 ? "PreconditionFailed" : fmt::format("HTTP{}", r.status);
  f.kind = gcs_error_kind(r.status, f.code);
  // Never the <Details> or <StringToSign> of a signature error: they quote the request.
  const std::string msg = clean(aws::xml_text(r.body, "Message"));
  if (f.code == "RequestTimeTooSkewed") {
    f.message = fmt::format("{}: RequestTimeTooSkewed — the request time is too far from the store's clock: check this "
                            "host's clock", what);
  } else if (f.code == "SignatureDoesNotMatch") {
    f.message = fmt::format("{}: SignatureDoesNotMatch — the HMAC secret does not match the access id", what);
  } else if (f.code == "InvalidAccessKeyId" || (f.code == "InvalidSecurity" && !bearer)) {
    f.message = fmt::format("{}: {} — unknown or disabled HMAC access id", what, f.code);
  } else if (f.kind == StoreErrorKind::credentials) {
    f.message = fmt::format("{}: HTTP {} {} — {} was refused", what, r.status, f.code,
                            bearer ? "the OAuth2 bearer token" : "the HMAC key");
  } else if (f.code == "NoSuchBucket") {
    f.message = fmt::format("{}: NoSuchBucket — the bucket does not exist (Holdfast never creates it)", what);
  } else {
    f.message = fmt::format("{}: HTTP {} {}{}", what, r.status, f.code, msg.empty() ? "" : ": " + msg);
  }
  return f;
}

std::string generation_match(const cloud::WriteCondition& cond) {
  if (cond.kind == cloud::WriteCondition::Kind::create_only) return "0";
  if (cond.kind == cloud::WriteCondition::Kind::replace_version) return cond.version;
  return "";
}

GcsClient::GcsClient(asio::any_io_executor ex, GcsOptions opts)
    : RequestStore(std::move(ex), opts.endpoint, "GCS"), opts_(std::move(opts)) {
  if (opts_.hmac_access_id.empty() || opts_.hmac_secret.empty())
    tokens_ = std::make_unique<TokenProvider>(ex_, opts_.credentials_file);
}

GcsClient::~GcsClient() = default;

asio::awaitable<cloud::StoreResult<http::ClientResponse>> GcsClient::send(const std::string& method,
                                                                         const std::string& bucket,
                                                                         const std::string& key,
                                                                         const std::string& body, http::Headers extra) {
  cloud::StoreRequest req;
  req.method = method;
  req.what = fmt::format("GCS {} {}", method, url(bucket, key));
  const std::string path = base_.path + "/" + bucket + "/" + key;
  req.body = body;
  req.max_attempts = opts_.max_attempts;
  req.timeout = opts_.timeout;
  req.prepare = [&](const std::string& token, std::string& target, http::Headers& headers) {
    if (!token.empty()) {
      target = aws::uri_encode(path, true);
      headers = bearer_headers(extra, token);
    } else {
      headers = hmac_headers(method, base_, path, body, extra, opts_.hmac_access_id, opts_.hmac_secret,
                             aws::amz_date_now(), target);
    }
  };
  const bool bearer = tokens_ != nullptr;
  req.error = [&](const http::ClientResponse& r) { return gcs_error(r, req.what, bearer); };
  req.retryable = retryable;
  co_return co_await cloud::RequestStore::send(req);
}

asio::awaitable<cloud::StoreResult<cloud::StoredObject>> GcsClient::get(const std::string& bucket,
                                                                        const std::string& key) {
  auto r = co_await send("GET", bucket, key, "", {});
  cloud::StoreResult<cloud::StoredObject> out;
  if (!r.ok()) {
    out.error = std::move(r.error);
    co_return out;
  }
  cloud::StoredObject o;
  o.version = r.value->header("x-goog-generation");
  o.body = std::move(r.value->body);
  out.value = std::move(o);
  co_return out;
}

asio::awaitable<cloud::StoreResult<std::string>> GcsClient::put(const std::string& bucket, const std::string& key,
                                                                const std::string& body,
                                                                const std::string& content_type,
                                                                cloud::WriteCondition cond) {
  http::Headers extra;
  extra.emplace_back("content-type", content_type);
  const std::string match = generation_match(cond);
  cloud::StoreResult<std::string> out;
  if (cond.kind == cloud::WriteCondition::Kind::replace_version &&
      (match.empty() || match.find_first_not_of("0123456789") != std::string::npos)) {
    // Without a generation the write would be unconditional: refuse it.
    out.error = StoreError{StoreErrorKind::other, "NoGeneration",
                           fmt::format("GCS PUT {}: the object's generation is unknown; not replacing it", url(bucket, key))};
    co_return out;
  }
  if (!match.empty()) extra.emplace_back("x-goog-if-generation-match", match);
  auto r = co_await send("PUT", bucket, key, body, std::move(extra));
  if (!r.ok()) out.error = std::move(r.error);
  else out.value = r.value->header("x-goog-generation");
  co_return out;
}

}  // namespace holdfast::gcs
