// A minimal Azure Blob client (Put Blob, Get Blob) over the project's HTTP
// client: the Azure Blob implementation of cloud::ObjectStore. Shared Key
// or SAS token authorization, one pinned x-ms-version, conditional writes,
// errors from x-ms-error-code turned into store error kinds, retries with
// backoff on 5xx, throttling and network errors. Control thread only.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <memory>
#include <string>

#include "cloud/azure/identity.h"
#include "cloud/object_store.h"
#include "cloud/store_request.h"
#include "http/client.h"

namespace holdfast::azure {

// The REST version every request asks for: old enough for Azurite 3.35 and
// every Azure region, new enough for Put Blob's If-None-Match: *.
inline constexpr const char* kApiVersion = "2021-08-06";

struct BlobOptions {
  std::string account;
  std::string key;         // decoded account key (Shared Key); empty = use sas_token
  std::string sas_token;   // query string without '?'
                           // neither: Entra ID bearer tokens (identity.h)
  std::string endpoint;    // https://<account>.blob.core.windows.net, or an emulator's URL with the account path
  int max_attempts = 4;
  double timeout = 15;     // seconds per attempt
};

class BlobClient final : public cloud::RequestStore {
 public:
  BlobClient(boost::asio::any_io_executor ex, BlobOptions opts);
  ~BlobClient() override;
  boost::asio::awaitable<cloud::StoreResult<cloud::StoredObject>> get(const std::string& container,
                                                                      const std::string& blob) override;
  // create_only is If-None-Match: *, replace_version is If-Match: <ETag>. Returns the new ETag.
  boost::asio::awaitable<cloud::StoreResult<std::string>> put(const std::string& container, const std::string& blob,
                                                              const std::string& body, const std::string& content_type,
                                                              cloud::WriteCondition cond) override;
  std::string url(const std::string& container, const std::string& blob) const override;

 private:
  boost::asio::awaitable<cloud::StoreResult<http::ClientResponse>> send(const std::string& method,
                                                                       const std::string& container,
                                                                       const std::string& blob, const std::string& body,
                                                                       http::Headers extra);
  BlobOptions opts_;  // tokens_ (RequestStore) is a TokenProvider without a key or SAS token
};

// The store-independent kind of an Azure answer, and the error with its one
// line that names `what` (exposed for the unit test).
cloud::StoreErrorKind blob_error_kind(int status, const std::string& code);
// `credential` names what was refused: "the account key or SAS token".
cloud::StoreError blob_error(const http::ClientResponse& r, const std::string& what, const char* credential);

}  // namespace holdfast::azure
