// What every cloud credential source reads from the process: environment
// variables, the wall clock (token expiry), and token files (Kubernetes
// projects them and rotates them, so they are read again for every
// exchange). Shared by the AWS chain and the Azure identity provider.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/status.h"

namespace holdfast::cloud {

// The variable's value, or "" when it is not set.
std::string env(const char* name);
// Unix seconds.
int64_t now_unix();
// A token file's contents without trailing newlines or spaces: a regular
// file of at most kMaxTokenFileBytes (projected tokens are about 1 KiB, a
// service-account key about 2.5 KiB). Errors name the path, never the
// contents.
inline constexpr size_t kMaxTokenFileBytes = 64 * 1024;
Result<std::string> read_token_file(const std::string& path);

}  // namespace holdfast::cloud
