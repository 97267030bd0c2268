#include "cloud/azure/blob_client.h"

#include <fmt/format.h>

#include <string_view>

#include "cloud/aws/sigv4.h"
#include "cloud/aws/xml.h"
#include "cloud/azure/shared_key.h"
#include "cloud/http_store.h"
#include "cloud/store_request.h"

namespace holdfast::azure {
namespace asio = boost::asio;
using cloud::StoreError;
using cloud::StoreErrorKind;

namespace {

bool retryable(int status, const std::string& code) {
  return status == 0 || status >= 500 || status == 429 || code == "ServerBusy" || code == "InternalError" ||
         code == "OperationTimedOut";
}

// The first line of a service message, without control characters: Azure's
// messages carry "\nRequestId:...\nTime:..." lines.
std::string first_line(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\r' || c == '\n') break;
    if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) out += c;
  }
  return out;
}

// Built outside the coroutine bodies (GCC 12).
http::Headers request_headers(const std::string& method, const std::string& account, const std::string& key,
                              const std::string& encoded_path, const std::string& body, const http::Headers& extra) {
  http::Headers h = extra;
  h.emplace_back("x-ms-date", rfc1123_now());
  h.emplace_back("x-ms-version", kApiVersion);
  if (!key.empty()) {
    SharedKeyInput in;
    in.method = method;
    in.account = account;
    in.encoded_path = encoded_path;
    in.headers = h;
    // The HTTP client adds Content-Length to every PUT and to any request with a body.
    if (!body.empty() || method == "PUT") in.headers.emplace_back("content-length", std::to_string(body.size()));
    h.emplace_back("authorization", authorization(account, key, string_to_sign(in)));
  }
  return h;
}

}  // namespace

StoreErrorKind blob_error_kind(int status, const std::string& code) {
  if (code == "ContainerNotFound") return StoreErrorKind::bucket_not_found;
  if (code == "BlobNotFound" || status == 404) return StoreErrorKind::not_found;
  // Put Blob with If-None-Match: * on an existing blob answers 409 BlobAlreadyExists; If-Match on another ETag 412.
  if (code == "BlobAlreadyExists" || code == "ConditionNotMet" || status == 412) return StoreErrorKind::precondition_failed;
  // Azure says AuthenticationFailed to a wrong key or signature, an expired SAS
  // token or a skewed clock; Azurite says AuthorizationFailure to a wrong key.
  if (code == "AuthenticationFailed" || code == "AuthorizationFailure" || code == "InvalidAuthenticationInfo" ||
      code == "NoAuthenticationInformation")
    return StoreErrorKind::credentials;
  if (code == "AuthorizationPermissionMismatch" || code == "AuthorizationResourceTypeMismatch" ||
      code == "AuthorizationSourceIPMismatch" || code == "AuthorizationProtocolMismatch" ||
      code == "AuthorizationServiceMismatch" || code == "InsufficientAccountPermissions" || status == 403)
    return StoreErrorKind::access_denied;
  if (retryable(status, code)) return StoreErrorKind::transient;
  return StoreErrorKind::other;
}

StoreError blob_error(const http::ClientResponse& r, const std::string& what, const char* credential) {
  StoreError f;
  // x-ms-error-code is the documented source; a HEAD-less error body says the same.
  f.code = first_line(r.header("x-ms-error-code"));
  if (f.code.empty()) f.code = first_line(aws::xml_text(r.body, "Code"));
  if (f.code.empty()) f.code = fmt::format("HTTP{}", r.status);
  f.kind = blob_error_kind(r.status, f.code);
  const std::string msg = first_line(aws::xml_text(r.body, "Message"));
  if (f.kind == StoreErrorKind::credentials) {
    // The error detail may quote the string to sign and the signature: only
    // the clock-skew case is worth naming, and without the text.
    const std::string detail = aws::xml_text(r.body, "AuthenticationErrorDetail");
    const bool skew = detail.find("Request date header") != std::string::npos ||
                      detail.find("x-ms-date") != std::string::npos;
    f.message = fmt::format("{}: HTTP {} {} — {} was refused{}", what, r.status, f.code, credential,
                            skew ? " (the request time is outside the service's window: check this host's clock)" : "");
  } else if (f.code == "ContainerNotFound") {
    f.message = fmt::format("{}: ContainerNotFound — the container does not exist (Holdfast never creates it)", what);
  } else {
    f.message = fmt::format("{}: HTTP {} {}{}", what, r.status, f.code, msg.empty() ? "" : ": " + msg);
  }
  return f;
}

BlobClient::BlobClient(asio::any_io_executor ex, BlobOptions opts)
    : RequestStore(std::move(ex), opts.endpoint, "Azure Blob"), opts_(std::move(opts)) {
  if (opts_.key.empty() && opts_.sas_token.empty()) tokens_ = std::make_unique<TokenProvider>(ex_);
}

BlobClient::~BlobClient() = default;

std::string BlobClient::url(const std::string& container, const std::string& blob) const {
  return opts_.endpoint + "/" + container + "/" + blob;
}

asio::awaitable<cloud::StoreResult<http::ClientResponse>> BlobClient::send(const std::string& method,
                                                                          const std::string& container,
                                                                          const std::string& blob,
                                                                          const std::string& body, http::Headers extra) {
  cloud::StoreRequest req;
  req.method = method;
  req.what = fmt::format("Azure Blob {} {}", method, url(container, blob));
  const std::string path = base_.path + "/" + container + "/" + aws::uri_encode(blob, true);
  // With a SAS token the token is the authorization: appended as it is.
  const std::string target = opts_.key.empty() && !opts_.sas_token.empty() ? path + "?" + opts_.sas_token : path;
  req.body = body;
  req.max_attempts = opts_.max_attempts;
  req.timeout = opts_.timeout;
  req.prepare = [&](const std::string& token, std::string& t, http::Headers& headers) {
    t = target;
    headers = request_headers(method, opts_.account, opts_.key, path, body, extra);
    if (!token.empty()) headers.emplace_back("authorization", "Bearer " + token);
  };
  const char* credential = tokens_ ? "the Entra ID bearer token" : "the account key or SAS token";
  req.error = [&](const http::ClientResponse& r) { return blob_error(r, req.what, credential); };
  req.retryable = retryable;
  co_return co_await cloud::RequestStore::send(req);
}

asio::awaitable<cloud::StoreResult<cloud::StoredObject>> BlobClient::get(const std::string& container,
                                                                         const std::string& blob) {
  co_return cloud::stored_object(co_await send("GET", container, blob, "", {}));
}

asio::awaitable<cloud::StoreResult<std::string>> BlobClient::put(const std::string& container, const std::string& blob,
                                                                 const std::string& body,
                                                                 const std::string& content_type,
                                                                 cloud::WriteCondition cond) {
  http::Headers extra;
  extra.emplace_back("content-type", content_type);
  extra.emplace_back("x-ms-blob-type", "BlockBlob");
  cloud::add_condition(extra, cond);
  co_return cloud::new_version(co_await send("PUT", container, blob, body, std::move(extra)));
}

}  // namespace holdfast::azure
