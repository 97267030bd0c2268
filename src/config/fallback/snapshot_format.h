// The fallback snapshot on S3 (DESIGN §2): a resource object (APISIX
// standalone JSON, timestamps stripped), a config object
// ({"config":{"config_version":N,"config_payload":{keyring,...}}}), both
// content-addressed and immutable, and a manifest written last that names
// them with their SHA-256 digests (optionally HMAC-signed). A reader applies
// a snapshot only when the manifest and both objects agree.
#pragma once
#include <boost/json/object.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace holdfast::config::fallback {

constexpr int kFormatVersion = 1;

struct ObjectRef {
  std::string bucket, key, sha256;
  uint64_t size = 0;
};

struct Manifest {
  std::string gateway_group_id;
  int64_t revision = 0;          // etcd revision the snapshot was taken at
  std::string producer;          // hostname of the backup node
  std::string producer_version;
  int64_t created_at = 0;        // unix seconds: when this content was first exported
  int64_t heartbeat_at = 0;      // unix seconds: last time the backup node confirmed it
  ObjectRef resource, config;
  std::string hmac;              // hex HMAC-SHA256 over signing_string(), or ""
  std::string signing_string() const;
};

// Object names. API7-compatible names (one object per gateway group) are
// written too, but readers use the manifest and the immutable objects.
std::string manifest_key(const std::string& gid);
std::string resource_key(const std::string& gid, const std::string& sha256);
std::string config_key(const std::string& gid, const std::string& sha256);
inline std::string compat_key(const std::string& gid) { return gid; }

// Standalone-shaped document minus create_time/update_time, empty sections dropped.
boost::json::object resource_object(const boost::json::object& stored_doc);
std::string config_object(int64_t revision, const std::vector<std::string>& keyring, bool encrypt_fields);
size_t resource_count(const boost::json::object& doc);

std::string serialize_manifest(const Manifest& m);
Result<Manifest> parse_manifest(const std::string& text);
void sign_manifest(Manifest& m, const std::string& signing_key);
// Checks format, the HMAC (required when a signing key is configured):
// check_manifest and verify_signature, which a reader calls apart to tell a
// malformed manifest from a forged one.
Status verify_manifest(const Manifest& m, const std::string& gid, const std::string& signing_key);
Status check_manifest(const Manifest& m, const std::string& gid);
Status verify_signature(const Manifest& m, const std::string& signing_key);

// A verified snapshot, ready to apply.
struct Loaded {
  Manifest manifest;
  boost::json::object resources;       // stored form (fields may be encrypted)
  std::vector<std::string> keyring;    // from the config object
  bool encrypt_fields = true;
};
// Verifies both objects against the manifest (digest, JSON, shape):
// verify_digests, then parse_objects.
Result<Loaded> verify_objects(const Manifest& m, const std::string& resource_body, const std::string& config_body);
Status verify_digests(const Manifest& m, const std::string& resource_body, const std::string& config_body);
Result<Loaded> parse_objects(const Manifest& m, const std::string& resource_body, const std::string& config_body);

}  // namespace holdfast::config::fallback
