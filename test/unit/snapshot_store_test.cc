// The snapshot rules shared by every store (config/fallback/snapshot_store),
// against an in-memory store that honours the same preconditions as S3,
// Azure and GCS: create only, replace only this version.
#include "config/fallback/snapshot_store.h"
#include "config/fallback/fallback.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "cloud/aws/sigv4.h"

using namespace holdfast;
using namespace holdfast::config::fallback;
namespace asio = boost::asio;
namespace json = boost::json;
using cloud::StoreErrorKind;
using cloud::WriteCondition;

namespace {

class FakeStore : public cloud::ObjectStore {
 public:
  struct Obj {
    std::string body, version;
  };
  std::map<std::string, Obj> objects;  // "bucket/key"
  std::vector<std::string> puts;       // "bucket/key", in order
  std::vector<WriteCondition::Kind> put_conditions;
  bool conditions_supported = true;
  std::set<std::string> denied;  // read as access denied (S3 without ListBucket)
  std::optional<cloud::StoreError> fail_all;
  // Runs before a put is applied: a concurrent writer's moment.
  std::function<void(const std::string& bucket, const std::string& key)> before_put;

  void set(const std::string& bucket, const std::string& key, std::string body) {
    objects[bucket + "/" + key] = Obj{std::move(body), "v" + std::to_string(++versions_)};
  }
  const std::string* body(const std::string& bucket, const std::string& key) const {
    auto it = objects.find(bucket + "/" + key);
    return it == objects.end() ? nullptr : &it->second.body;
  }

  asio::awaitable<cloud::StoreResult<cloud::StoredObject>> get(const std::string& bucket, const std::string& key) override {
    cloud::StoreResult<cloud::StoredObject> out;
    const std::string k = bucket + "/" + key;
    if (fail_all) {
      out.error = *fail_all;
    } else if (denied.count(k)) {
      out.error = {StoreErrorKind::access_denied, "AccessDenied", "fake GET " + k + ": denied"};
    } else if (auto it = objects.find(k); it != objects.end()) {
      out.value = cloud::StoredObject{it->second.body, it->second.version};
    } else {
      out.error = {StoreErrorKind::not_found, "NoSuchKey", "fake GET " + k + ": not found"};
    }
    co_return out;
  }

  asio::awaitable<cloud::StoreResult<std::string>> put(const std::string& bucket, const std::string& key,
                                                       const std::string& body, const std::string& content_type,
                                                       WriteCondition cond) override {
    cloud::StoreResult<std::string> out;
    const std::string k = bucket + "/" + key;
    if (before_put) before_put(bucket, key);
    if (fail_all) {
      out.error = *fail_all;
      co_return out;
    }
    if (cond.kind != WriteCondition::Kind::none && !conditions_supported) {
      out.error = {StoreErrorKind::conditions_unsupported, "NotImplemented", "fake PUT " + k + ": no conditions"};
      co_return out;
    }
    puts.push_back(k);
    put_conditions.push_back(cond.kind);
    auto it = objects.find(k);
    const bool lost = (cond.kind == WriteCondition::Kind::create_only && it != objects.end()) ||
                      (cond.kind == WriteCondition::Kind::replace_version &&
                       (it == objects.end() || it->second.version != cond.version));
    if (lost) {
      out.error = {StoreErrorKind::precondition_failed, "PreconditionFailed", "fake PUT " + k + ": precondition failed"};
      co_return out;
    }
    set(bucket, key, body);
    out.value = objects[k].version;
    co_return out;
  }

  std::string url(const std::string& bucket, const std::string& key) const override { return "fake://" + bucket + "/" + key; }

 private:
  int versions_ = 0;
};

template <typename T>
T run(asio::awaitable<T> a) {
  asio::io_context io;
  std::optional<T> out;
  asio::co_spawn(io, std::move(a), [&](std::exception_ptr e, T v) {
    if (e) std::rethrow_exception(e);
    out = std::move(v);
  });
  io.run();
  return std::move(*out);
}

const std::string kGid = "gg";
const std::string kKey = "sign-me";
const std::string kManifest = "rb/holdfast/gg/manifest.json";

struct Fixture : ::testing::Test {
  std::shared_ptr<FakeStore> fake = std::make_shared<FakeStore>();
  Store store{"fake_store", "fake", "Fake", "rb", "cb", fake};

  SnapshotWriter writer(WriteMode mode = WriteMode::backup, int64_t now = 1000) {
    SnapshotWriter w(store, kGid, kKey, mode);
    w.clock = [now] { return now; };
    return w;
  }
  static SnapshotContent content(int64_t revision, const std::string& uri = "/a") {
    SnapshotContent c;
    c.resource_body = R"({"routes":[{"id":"1","uri":")" + uri + R"("}]})";
    c.config_body = config_object(revision, {"k1k1k1k1k1k1k1k1"}, true);
    c.revision = revision;
    c.producer = "test";
    return c;
  }
  std::optional<Manifest> manifest() const {
    const std::string* b = fake->body("rb", "holdfast/gg/manifest.json");
    if (!b) return std::nullopt;
    auto m = parse_manifest(*b);
    return m ? std::optional<Manifest>(*m) : std::nullopt;
  }
  // What another backup node would have written: a signed manifest of `revision`.
  std::string rival_manifest(int64_t revision) const {
    SnapshotContent c = content(revision, "/rival");
    Manifest m;
    m.gateway_group_id = kGid;
    m.revision = revision;
    m.producer = "rival";
    m.created_at = m.heartbeat_at = 900;
    std::string rsha = aws::sha256_hex(c.resource_body), csha = aws::sha256_hex(c.config_body);
    m.resource = {"rb", resource_key(kGid, rsha), rsha, c.resource_body.size()};
    m.config = {"cb", config_key(kGid, csha), csha, c.config_body.size()};
    sign_manifest(m, kKey);
    return serialize_manifest(m);
  }
  FetchResult fetch(const std::string& key = kKey) { return run(fetch_snapshot(store, kGid, key)); }
};

using SnapshotStore = Fixture;

TEST_F(SnapshotStore, WritesImmutableObjectsFirstAndTheManifestLastThenReadsItBack) {
  auto w = writer();
  auto out = run(w.write(content(5)));
  ASSERT_EQ(out.kind, WriteOutcome::Kind::written) << out.error.message;
  ASSERT_EQ(fake->puts.size(), 5u);
  EXPECT_EQ(fake->puts[0].rfind("rb/holdfast/gg/resources/", 0), 0u);
  EXPECT_EQ(fake->puts[1].rfind("cb/holdfast/gg/config/", 0), 0u);
  EXPECT_EQ(fake->puts[2], "rb/gg");  // the API7-compatible names
  EXPECT_EQ(fake->puts[3], "cb/gg");
  EXPECT_EQ(fake->puts[4], kManifest);
  EXPECT_EQ(fake->put_conditions[0], WriteCondition::Kind::create_only);
  EXPECT_EQ(fake->put_conditions[4], WriteCondition::Kind::create_only);

  auto got = fetch();
  ASSERT_TRUE(got.ok()) << got.error;
  EXPECT_EQ(got.snapshot->manifest.revision, 5);
  EXPECT_EQ(got.snapshot->resources.at("routes").as_array()[0].as_object().at("uri").as_string(), "/a");
  EXPECT_EQ(got.snapshot->keyring, std::vector<std::string>{"k1k1k1k1k1k1k1k1"});
}

TEST_F(SnapshotStore, UnchangedContentOnlyRefreshesTheHeartbeat) {
  auto w = writer();
  ASSERT_EQ(run(w.write(content(5))).kind, WriteOutcome::Kind::written);
  const size_t puts = fake->puts.size();
  w.clock = [] { return int64_t{1060}; };
  auto out = run(w.write(content(5)));
  ASSERT_EQ(out.kind, WriteOutcome::Kind::heartbeat) << out.error.message;
  EXPECT_TRUE(out.skipped_objects);
  ASSERT_EQ(fake->puts.size(), puts + 1) << "only the manifest";
  EXPECT_EQ(fake->puts.back(), kManifest);
  EXPECT_EQ(fake->put_conditions.back(), WriteCondition::Kind::replace_version);
  auto m = manifest();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->created_at, 1000);
  EXPECT_EQ(m->heartbeat_at, 1060);
  EXPECT_TRUE(fetch().ok()) << "the heartbeat manifest is signed too";

  // After 12 hours the live objects are uploaded again (a lifecycle rule
  // expires them by age), over what is there.
  w.clock = [] { return int64_t{1000 + 12 * 3600 + 1}; };
  out = run(w.write(content(5)));
  ASSERT_EQ(out.kind, WriteOutcome::Kind::written) << out.error.message;
  EXPECT_EQ(fake->puts.size(), puts + 1 + 5);
  EXPECT_EQ(fake->put_conditions[puts + 1], WriteCondition::Kind::none);
}

TEST_F(SnapshotStore, NeverOverwritesAHigherRevision) {
  fake->set("rb", "holdfast/gg/manifest.json", rival_manifest(10));
  const std::string before = *fake->body("rb", "holdfast/gg/manifest.json");
  auto w = writer();
  auto out = run(w.write(content(5)));
  EXPECT_EQ(out.kind, WriteOutcome::Kind::newer_in_store);
  EXPECT_EQ(out.store_revision, 10);
  EXPECT_TRUE(fake->puts.empty()) << "nothing uploaded";
  EXPECT_EQ(*fake->body("rb", "holdfast/gg/manifest.json"), before);
}

TEST_F(SnapshotStore, ConcurrentWriterOfAHigherRevisionWinsTheRace) {
  // The store holds revision 4; we read it, then another backup node writes
  // revision 100 before our manifest lands.
  fake->set("rb", "holdfast/gg/manifest.json", rival_manifest(4));
  fake->before_put = [this](const std::string&, const std::string& key) {
    if (key != "holdfast/gg/manifest.json") return;
    fake->set("rb", key, rival_manifest(100));
    fake->before_put = nullptr;
  };
  auto w = writer();
  auto out = run(w.write(content(5)));
  EXPECT_EQ(out.kind, WriteOutcome::Kind::concurrent_write);
  EXPECT_EQ(out.error.kind, StoreErrorKind::precondition_failed);
  EXPECT_EQ(fake->put_conditions.back(), WriteCondition::Kind::replace_version);
  ASSERT_TRUE(manifest());
  EXPECT_EQ(manifest()->revision, 100);
  // The next round reads again and leaves the higher revision alone.
  out = run(w.write(content(5)));
  EXPECT_EQ(out.kind, WriteOutcome::Kind::newer_in_store);
  EXPECT_EQ(manifest()->revision, 100);
}

TEST_F(SnapshotStore, ConcurrentFirstWriterLosesCreateOnlyThenOverwritesALowerRevision) {
  // No manifest when we read; a rival creates revision 3 before our create-only write.
  fake->before_put = [this](const std::string&, const std::string& key) {
    if (key != "holdfast/gg/manifest.json") return;
    fake->set("rb", key, rival_manifest(3));
    fake->before_put = nullptr;
  };
  auto w = writer();
  auto out = run(w.write(content(5)));
  EXPECT_EQ(out.kind, WriteOutcome::Kind::concurrent_write);
  EXPECT_EQ(manifest()->revision, 3);
  // Read again: 3 < 5, so ours replaces exactly the version it read.
  out = run(w.write(content(5)));
  ASSERT_EQ(out.kind, WriteOutcome::Kind::written) << out.error.message;
  EXPECT_EQ(manifest()->revision, 5);
}

TEST_F(SnapshotStore, ManifestThatCannotBeReadIsNeverReplaced) {
  // S3 without s3:ListBucket answers 403 for a missing key, so "denied" reads
  // as "no manifest"; the create-only write keeps an unreadable one safe.
  fake->set("rb", "holdfast/gg/manifest.json", rival_manifest(100));
  fake->denied.insert(kManifest);
  auto w = writer();
  auto out = run(w.write(content(5)));
  EXPECT_EQ(out.kind, WriteOutcome::Kind::concurrent_write);
  fake->denied.clear();
  EXPECT_EQ(manifest()->revision, 100);
  // And with nothing there, the same node exports.
  fake->objects.erase(kManifest);
  fake->denied.insert(kManifest);
  EXPECT_EQ(run(w.write(content(5))).kind, WriteOutcome::Kind::written);
}

TEST_F(SnapshotStore, BackupNeverReplacesAnUnparseableManifestPushDoes) {
  fake->set("rb", "holdfast/gg/manifest.json", R"({"format":"holdfast-fallback","format_version":2})");
  auto backup = writer();
  EXPECT_EQ(run(backup.write(content(5))).kind, WriteOutcome::Kind::concurrent_write);
  EXPECT_FALSE(manifest()) << "a manifest of a newer format stays";
  auto push = writer(WriteMode::push);
  auto out = run(push.write(content(1)));
  ASSERT_EQ(out.kind, WriteOutcome::Kind::written) << out.error.message;
  EXPECT_EQ(manifest()->revision, 1);
}

TEST_F(SnapshotStore, PushNeedsARevisionAboveTheStoresAndRewritesItsObjects) {
  auto backup = writer();
  ASSERT_EQ(run(backup.write(content(5))).kind, WriteOutcome::Kind::written);
  const size_t puts = fake->puts.size();
  auto push = writer(WriteMode::push);
  auto out = run(push.write(content(5)));
  EXPECT_EQ(out.kind, WriteOutcome::Kind::newer_in_store);
  EXPECT_EQ(fake->puts.size(), puts);
  // A damaged object is repaired by pushing the same content as a new revision.
  const std::string rkey = manifest()->resource.key;
  fake->set("rb", rkey, R"({"routes":[]})");
  SnapshotContent c = content(6);
  c.resource_body = content(5).resource_body;
  out = run(push.write(c));
  ASSERT_EQ(out.kind, WriteOutcome::Kind::written) << out.error.message;
  EXPECT_EQ(*fake->body("rb", rkey), c.resource_body);
  EXPECT_EQ(fake->objects.count("rb/gg"), 1u) << "written by the backup node";
  auto got = fetch();
  ASSERT_TRUE(got.ok()) << got.error;
  EXPECT_EQ(got.snapshot->manifest.revision, 6);
}

TEST_F(SnapshotStore, StoreWithoutConditionalWritesFallsBackToReadCheckWrite) {
  fake->conditions_supported = false;
  auto w = writer();
  auto out = run(w.write(content(5)));
  ASSERT_EQ(out.kind, WriteOutcome::Kind::written) << out.error.message;
  for (auto k : fake->put_conditions) EXPECT_EQ(k, WriteCondition::Kind::none);
  // Remembered: the next round writes unconditionally at once, and the
  // never-regress check still reads first.
  fake->set("rb", "holdfast/gg/manifest.json", rival_manifest(10));
  EXPECT_EQ(run(w.write(content(7))).kind, WriteOutcome::Kind::newer_in_store);
  EXPECT_EQ(manifest()->revision, 10);
}

TEST_F(SnapshotStore, StoreErrorsAreReportedWithTheirKind) {
  fake->fail_all = cloud::StoreError{StoreErrorKind::credentials, "SignatureDoesNotMatch", "fake: wrong key"};
  auto w = writer();
  auto out = run(w.write(content(5)));
  EXPECT_EQ(out.kind, WriteOutcome::Kind::store_error);
  EXPECT_EQ(out.error.code, "SignatureDoesNotMatch");
  auto got = fetch();
  EXPECT_FALSE(got.ok());
  EXPECT_EQ(got.reason, "fake");
  EXPECT_FALSE(got.quiet);
  fake->fail_all = cloud::StoreError{StoreErrorKind::no_credentials, "NoCredentials", "no credentials"};
  EXPECT_TRUE(fetch().quiet) << "the credential chain logs that itself";
}

TEST_F(SnapshotStore, MissingManifestIsAStoreFailureNotAFormatOne) {
  auto got = fetch();
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.reason, "fake");
  EXPECT_NE(got.error.find("not found"), std::string::npos);
}

TEST_F(SnapshotStore, TamperedObjectIsRejectedByItsDigest) {
  auto w = writer();
  ASSERT_EQ(run(w.write(content(5))).kind, WriteOutcome::Kind::written);
  fake->set("rb", manifest()->resource.key, R"({"routes":[{"id":"1","uri":"/evil"}]})");
  auto got = fetch();
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.reason, "digest");
  EXPECT_NE(got.error.find("digest does not match"), std::string::npos);
}

TEST_F(SnapshotStore, TamperedOrUnsignedManifestIsRejectedBySignature) {
  auto w = writer();
  ASSERT_EQ(run(w.write(content(5))).kind, WriteOutcome::Kind::written);
  Manifest m = *manifest();
  m.revision = 99;  // the HMAC still signs revision 5
  fake->set("rb", "holdfast/gg/manifest.json", serialize_manifest(m));
  auto got = fetch();
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.reason, "signature");
  m.hmac.clear();
  fake->set("rb", "holdfast/gg/manifest.json", serialize_manifest(m));
  got = fetch();
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.reason, "signature");
  EXPECT_NE(got.error.find("not signed"), std::string::npos);
  EXPECT_TRUE(fetch("").ok()) << "without a signing key an unsigned manifest is accepted";
}

TEST_F(SnapshotStore, ManifestOfAnotherGroupOrShapeIsAFormatFailure) {
  auto w = writer();
  ASSERT_EQ(run(w.write(content(5))).kind, WriteOutcome::Kind::written);
  // gg's manifest where group "other" looks for its own
  fake->set("rb", "holdfast/other/manifest.json", *fake->body("rb", "holdfast/gg/manifest.json"));
  auto got = run(fetch_snapshot(store, "other", kKey));
  EXPECT_EQ(got.reason, "format");
  EXPECT_NE(got.error.find("for gateway group gg"), std::string::npos) << got.error;
  fake->set("rb", "holdfast/gg/manifest.json", "not json");
  EXPECT_EQ(fetch().reason, "format");
}

}  // namespace

// A store that refuses the credentials marks the fetch as refused (the
// supervisor backs off on it); any other store failure does not.
TEST_F(SnapshotStore, RefusedCredentialsAreToldApartFromOtherFailures) {
  fake->fail_all = cloud::StoreError{StoreErrorKind::credentials, "AuthenticationFailed", "fake GET: refused"};
  FetchResult refused = fetch();
  EXPECT_FALSE(refused.ok());
  EXPECT_TRUE(refused.refused);
  fake->fail_all = cloud::StoreError{StoreErrorKind::transient, "ServerBusy", "fake GET: busy"};
  FetchResult busy = fetch();
  EXPECT_FALSE(busy.ok());
  EXPECT_FALSE(busy.refused);
}

// Refused credentials back off: one interval after the first refused round,
// then doubling, up to 8 intervals but at most 5 minutes, never below one.
TEST(FallbackRetryDelay, BacksOffOnlyAfterRefusedRounds) {
  EXPECT_EQ(retry_delay(60, 0), 60);
  EXPECT_EQ(retry_delay(60, 1), 60);
  EXPECT_EQ(retry_delay(60, 2), 120);
  EXPECT_EQ(retry_delay(60, 3), 240);
  EXPECT_EQ(retry_delay(60, 4), 300);    // the 5-minute cap
  EXPECT_EQ(retry_delay(60, 1000), 300);
  EXPECT_EQ(retry_delay(1, 3), 4);
  EXPECT_EQ(retry_delay(1, 9), 8);       // 8 intervals
  EXPECT_EQ(retry_delay(600, 5), 600);   // never below one interval
}
