// Microsoft Entra ID bearer tokens for Azure Blob when neither an account
// key nor a SAS token is configured, first that applies:
//   - Azure Workload Identity (AKS): AZURE_CLIENT_ID, AZURE_TENANT_ID and
//     AZURE_FEDERATED_TOKEN_FILE set, the projected service-account token
//     exchanged at {AZURE_AUTHORITY_HOST}{tenant}/oauth2/v2.0/token
//     (client-credentials grant with a JWT-bearer client assertion); the file
//     is re-read on every exchange, as Kubernetes rotates it;
//   - managed identity through the instance metadata service (IMDS),
//     user-assigned when AZURE_CLIENT_ID is set; AZURE_POD_IDENTITY_AUTHORITY_HOST
//     overrides its address, as in Microsoft's SDKs.
// Tokens are cached and refreshed before they expire (5 minutes, or half the
// lifetime of a shorter one). Control thread only. Tokens are never logged.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <string>

#include "core/status.h"

namespace holdfast::azure {

// The scope / resource every token is asked for: Azure Storage.
inline constexpr const char* kStorageScope = "https://storage.azure.com/.default";
inline constexpr const char* kStorageResource = "https://storage.azure.com/";

struct AccessToken {
  std::string token;
  int64_t expires_unix = 0;
  int64_t obtained_unix = 0;
  const char* source = "";  // "workload-identity" or "managed-identity"
};

// Parses a token endpoint's JSON answer (Entra ID's expires_in is a number,
// IMDS's a string; expires_on, when there, wins). `now` is unix seconds.
Result<AccessToken> parse_token_answer(const std::string& body, int64_t now);

class TokenProvider {
 public:
  explicit TokenProvider(boost::asio::any_io_executor ex) : ex_(std::move(ex)) {}
  // The cached token, or a new one when it is close to expiry or
  // `force_refresh` (after the service refused it).
  boost::asio::awaitable<Result<std::string>> get(bool force_refresh = false);
  uint64_t refreshes() const { return refreshes_; }
  uint64_t refresh_failures() const { return refresh_failures_; }

 private:
  boost::asio::awaitable<Result<AccessToken>> workload_identity();
  boost::asio::awaitable<Result<AccessToken>> managed_identity();

  boost::asio::any_io_executor ex_;
  AccessToken cached_;
  uint64_t refreshes_ = 0, refresh_failures_ = 0;
  std::string last_error_;
};

}  // namespace holdfast::azure
