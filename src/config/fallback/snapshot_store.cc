#include "config/fallback/snapshot_store.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "cloud/aws/credentials.h"
#include "cloud/aws/s3_client.h"
#include "cloud/aws/sigv4.h"
#include "cloud/azure/blob_client.h"
#include "cloud/gcs/gcs_client.h"
#include "core/base64.h"
#include "core/log.h"

namespace holdfast::config::fallback {
namespace asio = boost::asio;
using cloud::StoreErrorKind;
using cloud::WriteCondition;

namespace {
int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}
constexpr const char* kJson = "application/json";
}  // namespace

Store make_store(asio::io_context& io, const FallbackConfig& f, const std::string& name) {
  if (name == "azure_blob") {
    azure::BlobOptions bo;
    bo.account = f.azure.account_name;
    // Config parsing checked the key's base64; the SAS token only counts without a key.
    if (!f.azure.account_key.empty()) bo.key = base64_decode(f.azure.account_key).value_or("");
    else bo.sas_token = f.azure.sas_token;
    bo.endpoint = f.azure.endpoint;
    Store s;
    s.name = "azure_blob";
    s.source = "azure_blob";
    s.label = "Azure Blob";
    s.resource_bucket = f.azure.resource_container;
    s.config_bucket = f.azure.config_container;
    s.client = std::make_shared<azure::BlobClient>(io.get_executor(), bo);
    return s;
  }
  if (name == "gcs") {
    gcs::GcsOptions go;
    go.endpoint = f.gcs.endpoint;
    go.hmac_access_id = f.gcs.hmac_access_id;
    go.hmac_secret = f.gcs.hmac_secret;
    go.credentials_file = f.gcs.credentials_file;
    Store s;
    s.name = "gcs";
    s.source = "gcs";
    s.label = "GCS";
    s.resource_bucket = f.gcs.resource_bucket;
    s.config_bucket = f.gcs.config_bucket;
    s.client = std::make_shared<gcs::GcsClient>(io.get_executor(), go);
    return s;
  }
  aws::CredentialsConfig cc{f.access_key, f.secret_key, f.region};
  auto creds = std::make_shared<aws::CredentialsProvider>(io.get_executor(), cc);
  aws::S3Options so;
  so.region = f.region;
  so.endpoint = f.endpoint;
  Store s;
  s.name = "aws_s3";
  s.source = "s3";
  s.label = "S3";
  s.resource_bucket = f.resource_bucket;
  s.config_bucket = f.config_bucket;
  s.client = std::make_shared<aws::S3Client>(io.get_executor(), so, creds);
  return s;
}

asio::awaitable<cloud::StoreResult<CurrentManifest>> read_manifest(Store& store, const std::string& gid) {
  cloud::StoreResult<CurrentManifest> out;
  auto r = co_await store.client->get(store.resource_bucket, manifest_key(gid));
  CurrentManifest cur;
  if (r.ok()) {
    cur.present = true;
    cur.version = r.value->version;
    if (auto m = parse_manifest(r.value->body)) cur.manifest = std::move(*m);
  } else if (r.error.kind != StoreErrorKind::not_found && r.error.kind != StoreErrorKind::bucket_not_found &&
             r.error.kind != StoreErrorKind::access_denied) {
    out.error = std::move(r.error);
    co_return out;
  }
  out.value = std::move(cur);
  co_return out;
}

SnapshotWriter::SnapshotWriter(Store& store, std::string gid, std::string signing_key, WriteMode mode)
    : clock(now_unix), store_(store), gid_(std::move(gid)), signing_key_(std::move(signing_key)), mode_(mode) {}

asio::awaitable<WriteOutcome> SnapshotWriter::write(const SnapshotContent& c) {
  auto cur = co_await read_manifest(store_, gid_);
  if (!cur.ok()) {
    WriteOutcome out;
    out.kind = WriteOutcome::Kind::store_error;
    out.error = std::move(cur.error);
    co_return out;
  }
  co_return co_await write(c, *cur.value);
}

asio::awaitable<cloud::StoreResult<std::string>> SnapshotWriter::put_object(const std::string& bucket,
                                                                            const std::string& key,
                                                                            const std::string& body, bool create_only) {
  WriteCondition cond = create_only && conditional_writes_ ? WriteCondition::create_only() : WriteCondition::unconditional();
  auto r = co_await store_.client->put(bucket, key, body, kJson, cond);
  if (!r.ok() && r.error.kind == StoreErrorKind::conditions_unsupported) {
    conditional_writes_ = false;
    log::warn("{} store does not support conditional writes; falling back to read-check-write (see docs)", store_.label);
    WriteCondition none = WriteCondition::unconditional();
    r = co_await store_.client->put(bucket, key, body, kJson, none);
  }
  co_return r;
}

asio::awaitable<WriteOutcome> SnapshotWriter::write(const SnapshotContent& c, const CurrentManifest& cur) {
  WriteOutcome out;
  const bool push = mode_ == WriteMode::push;
  const std::optional<Manifest>& existing = cur.manifest;
  // Never regress: a newer revision in the store stays (push: an equal one too).
  if (existing && (existing->revision > c.revision || (push && existing->revision == c.revision))) {
    out.kind = WriteOutcome::Kind::newer_in_store;
    out.store_revision = existing->revision;
    co_return out;
  }
  const std::string rsha = aws::sha256_hex(c.resource_body), csha = aws::sha256_hex(c.config_body);
  const int64_t now = clock();
  Manifest m;
  m.gateway_group_id = gid_;
  m.revision = c.revision;
  m.producer = c.producer;
  m.producer_version = HOLDFAST_VERSION;
  m.heartbeat_at = now;
  m.resource = ObjectRef{store_.resource_bucket, resource_key(gid_, rsha), rsha, c.resource_body.size()};
  m.config = ObjectRef{store_.config_bucket, config_key(gid_, csha), csha, c.config_body.size()};
  const bool same_content = existing && existing->resource.sha256 == rsha && existing->config.sha256 == csha;
  // Skip unchanged content, except now and then: a bucket lifecycle rule
  // expires old immutable objects by age, so the live ones are uploaded again
  // before they could age out.
  constexpr int64_t kRefreshSeconds = 12 * 3600;
  const bool unchanged = !push && same_content && now - last_upload_unix_ <= kRefreshSeconds;
  m.created_at = unchanged ? existing->created_at : now;
  if (unchanged) m.revision = std::max(existing->revision, c.revision);
  sign_manifest(m, signing_key_);
  out.skipped_objects = unchanged;
  if (!unchanged) {
    // Immutable, content-addressed objects first; the manifest last, so a
    // crash in between leaves the previous manifest pointing at complete data.
    struct Obj {
      const std::string* bucket;
      const std::string* key;
      const std::string* body;
    };
    for (const Obj& o : {Obj{&store_.resource_bucket, &m.resource.key, &c.resource_body},
                         Obj{&store_.config_bucket, &m.config.key, &c.config_body}}) {
      // Create-only, except when refreshing objects a lifecycle rule could
      // expire, and on a push, which rewrites what it names.
      auto r = co_await put_object(*o.bucket, *o.key, *o.body, !push && !same_content);
      if (!r.ok() && r.error.kind == StoreErrorKind::precondition_failed) continue;  // same content already there
      if (!r.ok()) {
        out.error = std::move(r.error);
        co_return out;
      }
      out.bytes += o.body->size();
    }
    if (!push) {
      // API7-compatible names: one object per gateway group in each bucket.
      WriteCondition none = WriteCondition::unconditional();
      auto c1 = co_await store_.client->put(store_.resource_bucket, compat_key(gid_), c.resource_body, kJson, none);
      auto c2 = co_await store_.client->put(store_.config_bucket, compat_key(gid_), c.config_body, kJson, none);
      if (!c1.ok() || !c2.ok()) {
        out.error = !c1.ok() ? std::move(c1.error) : std::move(c2.error);
        co_return out;
      }
    }
  }
  // Create only when there is none, else replace only the version read: a
  // writer that lost a race learns it here and reads again before writing.
  // A backup node does not replace a manifest it could not parse.
  std::string version;
  if (push || existing) version = cur.version;
  WriteCondition cond = !conditional_writes_ ? WriteCondition::unconditional()
                        : !version.empty()   ? WriteCondition::replace(version)
                                             : WriteCondition::create_only();
  const std::string body = serialize_manifest(m);
  auto r = co_await store_.client->put(store_.resource_bucket, manifest_key(gid_), body, kJson, cond);
  if (!r.ok()) {
    out.kind = r.error.kind == StoreErrorKind::precondition_failed ? WriteOutcome::Kind::concurrent_write
                                                                    : WriteOutcome::Kind::store_error;
    out.error = std::move(r.error);
    co_return out;
  }
  out.bytes += body.size();
  if (!unchanged) last_upload_unix_ = now;
  out.kind = unchanged ? WriteOutcome::Kind::heartbeat : WriteOutcome::Kind::written;
  out.manifest = std::move(m);
  co_return out;
}

asio::awaitable<FetchResult> fetch_snapshot(Store& store, const std::string& gid, const std::string& signing_key) {
  FetchResult out;
  auto fail = [&](std::string reason, std::string error) {
    out.reason = std::move(reason);
    out.error = std::move(error);
  };
  auto store_failed = [&](cloud::StoreError& e) {
    fail(store.source, std::move(e.message));
    out.quiet = e.kind == StoreErrorKind::no_credentials;
    out.refused = e.kind == StoreErrorKind::credentials;
  };
  auto man = co_await store.client->get(store.resource_bucket, manifest_key(gid));
  if (!man.ok()) {
    store_failed(man.error);
    co_return out;
  }
  auto m = parse_manifest(man.value->body);
  if (!m) {
    fail("format", m.error());
    co_return out;
  }
  if (auto st = check_manifest(*m, gid); !st) {
    fail("format", st.error());
    co_return out;
  }
  if (auto st = verify_signature(*m, signing_key); !st) {
    fail("signature", st.error());
    co_return out;
  }
  // The objects are read from where the (verified) manifest says.
  auto ro = co_await store.client->get(m->resource.bucket, m->resource.key);
  if (!ro.ok()) {
    store_failed(ro.error);
    co_return out;
  }
  auto co = co_await store.client->get(m->config.bucket, m->config.key);
  if (!co.ok()) {
    store_failed(co.error);
    co_return out;
  }
  if (auto st = verify_digests(*m, ro.value->body, co.value->body); !st) {
    fail("digest", st.error());
    co_return out;
  }
  auto loaded = parse_objects(*m, ro.value->body, co.value->body);
  if (!loaded) {
    fail("format", loaded.error());
    co_return out;
  }
  out.bytes = ro.value->body.size() + co.value->body.size() + man.value->body.size();
  out.snapshot = std::move(*loaded);
  co_return out;
}

}  // namespace holdfast::config::fallback
