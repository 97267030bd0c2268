// The request loop of the object stores that may use OAuth2 bearer tokens
// (Azure Blob, GCS): each attempt authorized afresh (a new signature date, or
// the cached token), 5xx, throttling and network errors retried with
// back-off, and a token the store refuses replaced once, at once. The store
// says how to authorize, how to read an error and what is worth retrying.
// Control thread only.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <functional>
#include <memory>
#include <string>

#include "cloud/access_token.h"
#include "cloud/object_store.h"
#include "http/client.h"

namespace holdfast::cloud {

struct StoreRequest {
  std::string method;
  std::string what;  // how errors name the request: "GCS GET gs://b/k"
  std::string body;
  int max_attempts = 4;
  double timeout = 15;  // seconds per attempt
  // The target and headers of one attempt; `token` is the bearer token, or
  // empty without a token provider.
  std::function<void(const std::string& token, std::string& target, http::Headers& headers)> prepare;
  // An answer of 300 or more as a store error.
  std::function<StoreError(const http::ClientResponse&)> error;
  std::function<bool(int status, const std::string& code)> retryable;
  // The store's cancel() flag: no attempt starts once it is set.
  const bool* cancelled = nullptr;
};

// `tokens` may be null (keys or signatures instead of bearer tokens).
boost::asio::awaitable<StoreResult<http::ClientResponse>> send_request(boost::asio::any_io_executor ex,
                                                                       http::HttpClient& client, CachedToken* tokens,
                                                                       const StoreRequest& req);

// What the stores built on send_request share (Azure Blob, GCS): one HTTP
// client on the endpoint's base URL, the bearer-token source when there is
// one, its counters, and cancel().
class RequestStore : public ObjectStore {
 public:
  CredentialStats credential_stats() const override;
  void cancel() override;

 protected:
  // `kind` names the store in the error of an endpoint that does not parse:
  // "Azure Blob", "GCS".
  RequestStore(boost::asio::any_io_executor ex, const std::string& endpoint, const char* kind);
  ~RequestStore() override;
  // send_request on this store's client, unless the endpoint is invalid.
  boost::asio::awaitable<StoreResult<http::ClientResponse>> send(StoreRequest& req);

  boost::asio::any_io_executor ex_;
  http::Url base_;  // the endpoint, without a trailing '/'
  std::unique_ptr<CachedToken> tokens_;  // null with keys or signatures

 private:
  std::string endpoint_;
  const char* kind_;
  bool base_ok_ = false;
  bool cancelled_ = false;
  std::unique_ptr<http::HttpClient> client_;
};

}  // namespace holdfast::cloud
