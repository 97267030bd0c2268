// The AWS credential chain (DESIGN §5), first that applies: explicit keys
// from config → environment → web identity (IRSA) → EKS Pod Identity →
// EC2 instance metadata (IMDSv2). Temporary credentials are cached and
// refreshed before they expire. Control thread only. Secrets never logged.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <memory>
#include <string>

#include "cloud/aws/sigv4.h"
#include "core/status.h"

namespace holdfast::aws {

struct CredentialsConfig {
  std::string access_key;   // both empty => use the chain
  std::string secret_key;
  std::string region;       // for the regional STS endpoint
};

class CredentialsProvider {
 public:
  CredentialsProvider(boost::asio::any_io_executor ex, CredentialsConfig cfg);
  ~CredentialsProvider();
  // Cached credentials, refreshed when they expire within 5 minutes or when
  // `force_refresh` (after an ExpiredToken answer).
  boost::asio::awaitable<Result<Credentials>> get(bool force_refresh = false);
  uint64_t refresh_failures() const { return refresh_failures_; }
  uint64_t refreshes() const { return refreshes_; }

 private:
  boost::asio::awaitable<Result<Credentials>> resolve();
  boost::asio::awaitable<Result<Credentials>> web_identity();
  boost::asio::awaitable<Result<Credentials>> container();
  boost::asio::awaitable<Result<Credentials>> imds();

  boost::asio::any_io_executor ex_;
  CredentialsConfig cfg_;
  Credentials cached_;
  uint64_t refresh_failures_ = 0, refreshes_ = 0;
  std::string last_error_;
};

// Parses an ISO-8601 UTC time (2026-01-02T03:04:05Z, fractions allowed) to unix seconds.
int64_t parse_iso8601(std::string_view s);

}  // namespace holdfast::aws
