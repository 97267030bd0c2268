// A minimal S3 client (GetObject, PutObject with conditions) over the
// project's HTTP client: SigV4, regional and custom endpoints,
// virtual-hosted and path-style addressing, S3 error XML turned into clear
// messages and classified errors, retries with backoff on 5xx, throttling
// and network errors. The S3 implementation of cloud::ObjectStore.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <map>
#include <memory>
#include <string>

#include "cloud/aws/credentials.h"
#include "cloud/object_store.h"
#include "core/status.h"
#include "http/client.h"

namespace holdfast::aws {

struct S3Options {
  std::string region = "us-east-1";
  std::string endpoint;          // "" = AWS (virtual-hosted); else path-style on this URL
  int max_attempts = 4;
  double timeout = 15;           // seconds per attempt
};

class S3Client final : public cloud::ObjectStore {
 public:
  S3Client(boost::asio::any_io_executor ex, S3Options opts, std::shared_ptr<CredentialsProvider> creds);
  ~S3Client() override;
  boost::asio::awaitable<cloud::StoreResult<cloud::StoredObject>> get(const std::string& bucket,
                                                                      const std::string& key) override;
  // create_only is If-None-Match: *, replace_version is If-Match: <ETag>. Returns the new ETag.
  boost::asio::awaitable<cloud::StoreResult<std::string>> put(const std::string& bucket, const std::string& key,
                                                              const std::string& body, const std::string& content_type,
                                                              cloud::WriteCondition cond) override;
  std::string url(const std::string& bucket, const std::string& key) const override { return "s3://" + bucket + "/" + key; }
  cloud::CredentialStats credential_stats() const override { return {creds_->refreshes(), creds_->refresh_failures()}; }
  void cancel() override;
  const S3Options& options() const { return opts_; }
  const CredentialsProvider& credentials() const { return *creds_; }

 private:
  struct Target {
    http::Url url;       // scheme/host/port
    std::string path;    // unencoded path, e.g. "/bucket/key" or "/key"
  };
  Target target(const std::string& bucket, const std::string& key) const;
  boost::asio::awaitable<cloud::StoreResult<http::ClientResponse>> send(const std::string& method, const std::string& bucket,
                                                                       const std::string& key, const std::string& body,
                                                                       http::Headers extra, bool conditional);
  http::HttpClient& client_for(const http::Url& url);

  boost::asio::any_io_executor ex_;
  S3Options opts_;
  std::shared_ptr<CredentialsProvider> creds_;
  std::map<std::string, std::unique_ptr<http::HttpClient>> clients_;
  bool unquoted_if_match_ = false;  // this endpoint wants If-Match without quotes (see put)
  bool cancelled_ = false;
};

}  // namespace holdfast::aws
