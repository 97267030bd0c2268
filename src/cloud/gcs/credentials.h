// Google OAuth2 bearer tokens for GCS when no HMAC key is configured, first
// that applies:
//   - a service-account JSON key file (fallback_cp.gcs.credentials_file, else
//     GOOGLE_APPLICATION_CREDENTIALS): an RS256-signed JWT assertion
//     (RFC 7523) exchanged at the file's token_uri; the file is read again
//     for every exchange, so a rotated key is picked up;
//   - the metadata server (GCE, and GKE Workload Identity through the GKE
//     metadata server): GET http://$GCE_METADATA_HOST/computeMetadata/v1/
//     instance/service-accounts/default/token with Metadata-Flavor: Google.
// Tokens are cached and renewed before they expire (cloud/access_token.h).
// Control thread only. The private key and the tokens are never logged,
// never put in an error message, never counted by value.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <string>

#include "cloud/access_token.h"
#include "cloud/gcs/service_account.h"
#include "core/status.h"

namespace holdfast::gcs {

inline constexpr const char* kDefaultMetadataHost = "metadata.google.internal";

class TokenProvider final : public cloud::CachedToken {
 public:
  // `credentials_file`: "" = GOOGLE_APPLICATION_CREDENTIALS, else the metadata server.
  TokenProvider(boost::asio::any_io_executor ex, std::string credentials_file)
      : CachedToken("GCS credentials"), ex_(std::move(ex)), credentials_file_(std::move(credentials_file)) {}

 private:
  boost::asio::awaitable<Result<cloud::AccessToken>> fetch() override;
  boost::asio::awaitable<Result<cloud::AccessToken>> service_account(const std::string& path);
  boost::asio::awaitable<Result<cloud::AccessToken>> metadata_server();

  boost::asio::any_io_executor ex_;
  std::string credentials_file_;
};

}  // namespace holdfast::gcs
