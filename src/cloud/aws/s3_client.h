// A minimal S3 client (GetObject, PutObject with conditions) over the
// project's HTTP client: SigV4, regional and custom endpoints,
// virtual-hosted and path-style addressing, S3 error XML turned into clear
// messages, retries with backoff on 5xx, throttling and network errors.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <map>
#include <memory>
#include <string>

#include "cloud/aws/credentials.h"
#include "core/status.h"
#include "http/client.h"

namespace holdfast::aws {

struct S3Options {
  std::string region = "us-east-1";
  std::string endpoint;          // "" = AWS (virtual-hosted); else path-style on this URL
  int max_attempts = 4;
  double timeout = 15;           // seconds per attempt
};

struct S3Object {
  int status = 0;                // 200, or 304 for a conditional GET that matched
  std::string body;
  std::string etag;
};

// An S3 error, classified.
struct S3Failure {
  int http_status = 0;           // 0 = transport error
  std::string code;              // AccessDenied, NoSuchKey, ...
  std::string message;           // one clear line, never a secret
  bool precondition_failed() const { return http_status == 412; }
  bool not_found() const { return code == "NoSuchKey" || http_status == 404; }
};

template <typename T>
struct S3Result {
  std::optional<T> value;
  S3Failure failure;
  bool ok() const { return value.has_value(); }
};

enum class PutCondition { none, if_none_match, if_match };

class S3Client {
 public:
  S3Client(boost::asio::any_io_executor ex, S3Options opts, std::shared_ptr<CredentialsProvider> creds);
  ~S3Client();
  boost::asio::awaitable<S3Result<S3Object>> get(const std::string& bucket, const std::string& key);
  // Returns the new ETag. `etag` is used by if_match.
  boost::asio::awaitable<S3Result<std::string>> put(const std::string& bucket, const std::string& key,
                                                    const std::string& body, const std::string& content_type,
                                                    PutCondition cond = PutCondition::none, const std::string& etag = "");
  const S3Options& options() const { return opts_; }
  const CredentialsProvider& credentials() const { return *creds_; }

 private:
  struct Target {
    http::Url url;       // scheme/host/port
    std::string path;    // unencoded path, e.g. "/bucket/key" or "/key"
  };
  Target target(const std::string& bucket, const std::string& key) const;
  boost::asio::awaitable<S3Result<http::ClientResponse>> send(const std::string& method, const std::string& bucket,
                                                              const std::string& key, const std::string& body,
                                                              http::Headers extra);
  http::HttpClient& client_for(const http::Url& url);

  boost::asio::any_io_executor ex_;
  S3Options opts_;
  std::shared_ptr<CredentialsProvider> creds_;
  std::map<std::string, std::unique_ptr<http::HttpClient>> clients_;
};

}  // namespace holdfast::aws
