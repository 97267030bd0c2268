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
// Tokens are cached and refreshed before they expire (cloud/access_token.h:
// 5 minutes early, or at half the lifetime of a shorter one). Control thread
// only. Tokens are never logged.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <string>

#include "cloud/access_token.h"
#include "core/status.h"

namespace holdfast::azure {

// The scope / resource every token is asked for: Azure Storage.
inline constexpr const char* kStorageScope = "https://storage.azure.com/.default";
inline constexpr const char* kStorageResource = "https://storage.azure.com/";

using cloud::AccessToken;
using cloud::parse_token_answer;

class TokenProvider final : public cloud::CachedToken {
 public:
  explicit TokenProvider(boost::asio::any_io_executor ex) : CachedToken("Azure credentials"), ex_(std::move(ex)) {}

 private:
  boost::asio::awaitable<Result<AccessToken>> fetch() override;
  boost::asio::awaitable<Result<AccessToken>> workload_identity();
  boost::asio::awaitable<Result<AccessToken>> managed_identity();

  boost::asio::any_io_executor ex_;
};

}  // namespace holdfast::azure
