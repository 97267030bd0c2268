// OAuth2 bearer tokens as the cloud credential sources use them (Entra ID and
// IMDS for Azure Blob, Google's token endpoint and metadata server for GCS):
// the token endpoint's JSON answer, and a cache that asks for a new token
// before the old one expires. Control thread only. Tokens are never logged.
#pragma once
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <string>

#include "core/status.h"
#include "http/client.h"

namespace holdfast::cloud {

struct AccessToken {
  std::string token;
  int64_t expires_unix = 0;
  int64_t obtained_unix = 0;
  const char* source = "";  // "workload-identity", "service-account", "metadata-server", ...
};

// The longest a token is kept, whatever its endpoint says.
inline constexpr int64_t kMaxLifetime = 24 * 3600;
// After a failed renewal, how long the still-valid token is used before the
// next attempt.
inline constexpr int64_t kRenewRetrySeconds = 10;

// Parses a token endpoint's JSON answer (Entra ID's and Google's expires_in
// is a number, IMDS's a string; expires_on, when there, wins). `now` is unix
// seconds.
Result<AccessToken> parse_token_answer(const std::string& body, int64_t now);
// The error code a token endpoint's JSON answer names ("invalid_grant"),
// without control characters and never the body as a whole (it may echo
// what was sent).
std::string token_endpoint_error(const std::string& body);

// The headers of a token request posted as a form (OAuth2 token endpoints).
http::Headers token_form_headers();

// A cached token, renewed 5 minutes before it expires (or at half the
// lifetime of a shorter one), or at once after the service refused it.
class CachedToken {
 public:
  // `what` names the credentials in log lines: "Azure credentials".
  explicit CachedToken(const char* what) : what_(what) {}
  virtual ~CachedToken() = default;
  boost::asio::awaitable<Result<std::string>> get(bool force_refresh = false);
  uint64_t refreshes() const { return refreshes_; }
  uint64_t refresh_failures() const { return refresh_failures_; }

 protected:
  // A new token from wherever this kind of credentials comes from.
  virtual boost::asio::awaitable<Result<AccessToken>> fetch() = 0;

 private:
  const char* what_;
  AccessToken cached_;
  uint64_t refreshes_ = 0, refresh_failures_ = 0;
  std::string last_error_;
  int64_t next_attempt_unix_ = 0;  // a failed renewal is tried again from then on (the old token meanwhile)
};

}  // namespace holdfast::cloud
