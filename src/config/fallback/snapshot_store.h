// The fallback snapshot's rules, written once against cloud::ObjectStore and
// shared by every store: what a write puts where and in which order (the
// immutable objects, then the manifest), never regress a revision, skip
// unchanged content, and on the read side the manifest, digests and HMAC.
// A store only moves bytes; it never sees a snapshot. Control thread only.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "cloud/object_store.h"
#include "config/fallback/snapshot_format.h"
#include "core/config.h"

namespace holdfast::config::fallback {

// One configured store and where the snapshot lives in it.
struct Store {
  std::string name;    // its key under fallback_cp: aws_s3, azure_blob, gcs; the store label in metrics and /status
  std::string source;  // what /status calls a snapshot it served, and the failure reason of its errors: s3, azure_blob, gcs
  std::string label;   // how log lines name it: S3, Azure Blob, GCS
  std::string resource_bucket, config_bucket;
  std::shared_ptr<cloud::ObjectStore> client;
};
// `name`: one of f.stores.
Store make_store(boost::asio::io_context& io, const FallbackConfig& f, const std::string& name);

// The store's manifest as a writer finds it.
struct CurrentManifest {
  bool present = false;              // an object is there, whether it parsed or not
  std::optional<Manifest> manifest;  // when it parsed
  std::string version;               // the object's version, when present
};
// "No manifest" is any of: not found; a missing bucket (the write that needs
// it reports that); access denied (S3 without s3:ListBucket answers a missing
// key so). The create-only write that follows cannot replace a manifest that
// is there but could not be read.
boost::asio::awaitable<cloud::StoreResult<CurrentManifest>> read_manifest(Store& store, const std::string& gid);

// One snapshot's content, serialized as it is stored.
struct SnapshotContent {
  std::string resource_body, config_body;
  int64_t revision = 0;
  std::string producer;  // names the writer in the manifest
};

enum class WriteMode {
  // The backup node. A revision below the store's is refused; the same
  // content only refreshes the manifest's heartbeat (at the higher of the two
  // revisions); the API7-named objects are written too; a manifest that does
  // not parse (a newer format?) is never replaced.
  backup,
  // `holdfast snapshot push`: a new revision, strictly above the store's; the
  // objects are uploaded unconditionally (that repairs a damaged one) and a
  // manifest that does not parse is replaced.
  push,
};

struct WriteOutcome {
  enum class Kind {
    written,           // objects and manifest
    heartbeat,         // unchanged content: the manifest only
    newer_in_store,    // the store holds a newer revision: nothing written
    concurrent_write,  // another writer changed the manifest since it was read: try again from a fresh read
    store_error,
  };
  Kind kind = Kind::store_error;
  Manifest manifest;           // written, heartbeat
  int64_t store_revision = 0;  // newer_in_store
  uint64_t bytes = 0;          // uploaded
  bool skipped_objects = false;  // the content was unchanged, so only the manifest was (to be) written
  cloud::StoreError error;     // concurrent_write, store_error
};

// Writes snapshots to one store, and remembers between rounds what it learnt
// about the store (no conditional writes) and when it last uploaded objects.
class SnapshotWriter {
 public:
  SnapshotWriter(Store& store, std::string gid, std::string signing_key, WriteMode mode);
  // Reads the current manifest, then writes.
  boost::asio::awaitable<WriteOutcome> write(const SnapshotContent& c);
  // Writes against a manifest already read (push chooses its revision from it).
  boost::asio::awaitable<WriteOutcome> write(const SnapshotContent& c, const CurrentManifest& cur);
  Store& store() { return store_; }

  std::function<int64_t()> clock;  // unix seconds; tests replace it

 private:
  boost::asio::awaitable<cloud::StoreResult<std::string>> put_object(const std::string& bucket, const std::string& key,
                                                                     const std::string& body, bool create_only);
  Store& store_;
  std::string gid_, signing_key_;
  WriteMode mode_;
  bool conditional_writes_ = true;
  int64_t last_upload_unix_ = 0;
};

// A verified snapshot read from one store, or why there is none.
struct FetchResult {
  std::optional<Loaded> snapshot;
  uint64_t bytes = 0;   // read, the manifest included
  std::string reason;   // holdfast_fallback_failures_total reason: digest, signature, format, or the store's source
  std::string error;    // one line
  bool quiet = false;   // the credential chain already logged it
  bool refused = false; // the store refused the credentials (wrong key or token, skewed clock)
  bool ok() const { return snapshot.has_value(); }
};
// Manifest (format, gateway group, HMAC), then both objects (digests, shape).
boost::asio::awaitable<FetchResult> fetch_snapshot(Store& store, const std::string& gid, const std::string& signing_key);

}  // namespace holdfast::config::fallback
