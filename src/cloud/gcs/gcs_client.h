// A minimal Google Cloud Storage client over the XML API (GET and PUT of an
// object, path-style on the endpoint): the GCS implementation of
// cloud::ObjectStore. Versions are generations (x-goog-generation), and a
// write's precondition is x-goog-if-generation-match (0 = create only): GCS
// has no If-Match on writes. Authorization: HMAC keys signed as AWS
// Signature V4 (GCS's interoperability mode: credential scope
// <date>/auto/s3/aws4_request), else OAuth2 bearer tokens (credentials.h).
// Errors from the XML body's <Code>, retries with back-off on 5xx,
// throttling and network errors. Control thread only.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <memory>
#include <string>

#include "cloud/gcs/credentials.h"
#include "cloud/object_store.h"
#include "cloud/store_request.h"
#include "http/client.h"

namespace holdfast::gcs {

inline constexpr const char* kDefaultEndpoint = "https://storage.googleapis.com";
// The SigV4 credential scope's region and service for HMAC keys. GCS takes
// "auto" for the location of any bucket, and "s3" with AWS4-HMAC-SHA256.
inline constexpr const char* kHmacRegion = "auto";
inline constexpr const char* kHmacService = "s3";

struct GcsOptions {
  std::string endpoint = kDefaultEndpoint;  // the XML API's base URL
  std::string hmac_access_id, hmac_secret;  // both, or neither (then bearer tokens)
  std::string credentials_file;             // service-account key; "" = GOOGLE_APPLICATION_CREDENTIALS, metadata server
  int max_attempts = 4;
  double timeout = 15;  // seconds per attempt
};

class GcsClient final : public cloud::RequestStore {
 public:
  GcsClient(boost::asio::any_io_executor ex, GcsOptions opts);
  ~GcsClient() override;
  // The body, versioned by its generation.
  boost::asio::awaitable<cloud::StoreResult<cloud::StoredObject>> get(const std::string& bucket,
                                                                      const std::string& key) override;
  // Returns the new generation.
  boost::asio::awaitable<cloud::StoreResult<std::string>> put(const std::string& bucket, const std::string& key,
                                                              const std::string& body, const std::string& content_type,
                                                              cloud::WriteCondition cond) override;
  std::string url(const std::string& bucket, const std::string& key) const override {
    return "gs://" + bucket + "/" + key;
  }

 private:
  boost::asio::awaitable<cloud::StoreResult<http::ClientResponse>> send(const std::string& method,
                                                                       const std::string& bucket,
                                                                       const std::string& key, const std::string& body,
                                                                       http::Headers extra);
  GcsOptions opts_;  // tokens_ (RequestStore) is a TokenProvider without HMAC keys
};

// The store-independent kind of a GCS answer, and the error with its one
// line that names `what` (exposed for the unit test). `bearer`: the request
// carried an OAuth2 token rather than an HMAC signature.
cloud::StoreErrorKind gcs_error_kind(int status, const std::string& code);
cloud::StoreError gcs_error(const http::ClientResponse& r, const std::string& what, bool bearer);
// The headers of a request signed with an HMAC key (`extra` plus x-amz-date,
// x-amz-content-sha256 and Authorization), and in `target` the encoded path
// to send. `amz_date`: YYYYMMDDTHHMMSSZ.
http::Headers hmac_headers(const std::string& method, const http::Url& base, const std::string& path,
                           const std::string& body, const http::Headers& extra, const std::string& access_id,
                           const std::string& secret, const std::string& amz_date, std::string& target);
// x-goog-if-generation-match for a write condition ("" for none).
std::string generation_match(const cloud::WriteCondition& cond);

}  // namespace holdfast::gcs
