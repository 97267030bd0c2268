// A generic object store, as much as the fallback needs and no more: read
// an object with its version, write one under a precondition. S3
// (cloud/aws/s3_client.h), Azure Blob (cloud/azure/blob_client.h) and GCS
// (cloud/gcs/gcs_client.h) implement it. Nothing
// here knows about snapshots, and callers know nothing of the wire protocol:
// they act on the error kind, and log the message.
#pragma once
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace holdfast::cloud {

// What went wrong, in terms a caller can act on whatever the store.
enum class StoreErrorKind {
  other,
  not_found,               // no such object
  bucket_not_found,        // no such bucket (container)
  precondition_failed,     // a conditional write lost: the object exists (create_only) or changed (replace_version)
  conditions_unsupported,  // the store refuses conditional writes themselves (some S3-compatible stores: 501)
  no_credentials,          // the credential chain found none; it logs why itself, once
  credentials,             // the store refused the credentials: wrong or expired key, skewed clock
  access_denied,           // authenticated but not allowed (S3 says this for a missing key without ListBucket)
  transient,               // 5xx, throttling, network error, after the client's own retries
  timeout,                 // no answer in time, after the client's own retries
  cancelled,               // the store was cancelled (shutdown)
};

struct StoreError {
  StoreErrorKind kind = StoreErrorKind::other;
  std::string code;     // the store's own code (NoSuchKey, SignatureDoesNotMatch, ...); may be empty
  std::string message;  // one line that names the request; never a secret
};

template <typename T>
struct StoreResult {
  std::optional<T> value;
  StoreError error;
  bool ok() const { return value.has_value(); }
};

struct StoredObject {
  std::string body;
  std::string version;  // ETag (S3, Azure) or generation (GCS): what WriteCondition::replace takes
};

// The only preconditions every store can honour on a write: GCS, for one,
// has no If-Match on writes, only "this generation" (0 = create only).
struct WriteCondition {
  enum class Kind { none, create_only, replace_version };
  Kind kind = Kind::none;
  std::string version;  // for replace_version
  static WriteCondition unconditional() { return {}; }
  static WriteCondition create_only() { return {Kind::create_only, {}}; }
  static WriteCondition replace(std::string version) { return {Kind::replace_version, std::move(version)}; }
};

// Counters of the store's credential source, for /metrics.
struct CredentialStats {
  uint64_t refreshes = 0, failures = 0;
};

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;
  virtual boost::asio::awaitable<StoreResult<StoredObject>> get(const std::string& bucket, const std::string& key) = 0;
  // Returns the new version.
  virtual boost::asio::awaitable<StoreResult<std::string>> put(const std::string& bucket, const std::string& key,
                                                               const std::string& body, const std::string& content_type,
                                                               WriteCondition cond) = 0;
  // How logs and the CLI name an object, e.g. "s3://bucket/key".
  virtual std::string url(const std::string& bucket, const std::string& key) const = 0;
  virtual CredentialStats credential_stats() const { return {}; }
  // For shutdown: aborts the request in flight and fails every later one at
  // once (StoreErrorKind::cancelled), so that a node stopping never waits on
  // a store that hangs.
  virtual void cancel() {}
};

}  // namespace holdfast::cloud
