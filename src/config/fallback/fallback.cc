#include "config/fallback/fallback.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <fmt/format.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <fstream>
#include <sstream>

#include "cloud/aws/sigv4.h"
#include "core/budgets.h"
#include "core/log.h"

namespace holdfast::config::fallback {
namespace asio = boost::asio;
namespace json = boost::json;
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

namespace {
int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

std::string hostname() {
  char buf[256] = {0};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

std::shared_ptr<aws::S3Client> make_s3(asio::io_context& io, const FallbackConfig& f) {
  aws::CredentialsConfig cc{f.access_key, f.secret_key, f.region};
  auto creds = std::make_shared<aws::CredentialsProvider>(io.get_executor(), cc);
  aws::S3Options so;
  so.region = f.region;
  so.endpoint = f.endpoint;
  return std::make_shared<aws::S3Client>(io.get_executor(), so, creds);
}

// --- local cache ---------------------------------------------------------

Status write_cache(const std::string& path, const CacheEntry& e) {
  json::object o;
  o["format"] = "holdfast-cache";
  o["format_version"] = 1;
  o["revision"] = e.revision;
  o["created_at"] = e.created_at;
  o["source"] = e.source;
  json::array ring;
  for (const auto& k : e.keyring) ring.push_back(json::string(k));
  o["keyring"] = std::move(ring);
  o["resources"] = e.resources;
  std::string body = json::serialize(o);
  o["sha256"] = aws::sha256_hex(json::serialize(e.resources));
  body = json::serialize(o);
  // Atomic replace: write a temp file, fsync, rename. A crash leaves the old file.
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);  // holds the keyring: owner only
  if (fd < 0) return Error{"cannot write cache " + tmp};
  size_t off = 0;
  while (off < body.size()) {
    ssize_t n = ::write(fd, body.data() + off, body.size() - off);
    if (n <= 0) { ::close(fd); return Error{"cannot write cache " + tmp}; }
    off += static_cast<size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return Error{"cannot rename cache to " + path};
  return {};
}

Result<CacheEntry> read_cache(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{"no local cache at " + path};
  // The cache wraps a standalone-shaped document one level deeper: {"resources": {"routes": [...]}}.
  constexpr budgets::Document budget = budgets::document(budgets::kCacheWrapper);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) > budget.max_bytes)
    return Error{fmt::format("local cache {} of {} bytes exceeds the limit of {} bytes", path, st.st_size, budget.max_bytes)};
  std::stringstream ss;
  ss << in.rdbuf();
  auto v = budgets::parse_json(ss.str(), budget);
  if (!v) return Error{"local cache " + path + ": " + v.error()};
  if (!v->is_object()) return Error{"local cache " + path + " is not valid JSON"};
  const auto& o = v->as_object();
  const auto* fmtv = o.if_contains("format");
  const auto* res = o.if_contains("resources");
  const auto* sha = o.if_contains("sha256");
  if (!fmtv || !fmtv->is_string() || fmtv->as_string() != "holdfast-cache" || !res || !res->is_object() || !sha ||
      !sha->is_string())
    return Error{"local cache " + path + " has an unknown shape"};
  if (aws::sha256_hex(json::serialize(res->as_object())) != sha->as_string())
    return Error{"local cache " + path + " digest does not match (damaged file)"};
  CacheEntry e;
  e.resources = res->as_object();
  if (const auto* r = o.if_contains("revision"); r && r->is_int64()) e.revision = r->as_int64();
  if (const auto* r = o.if_contains("created_at"); r && r->is_int64()) e.created_at = r->as_int64();
  if (const auto* r = o.if_contains("source"); r && r->is_string()) e.source = std::string(r->as_string());
  if (const auto* r = o.if_contains("keyring"); r && r->is_array())
    for (const auto& k : r->as_array())
      if (k.is_string()) e.keyring.emplace_back(k.as_string());
  return e;
}

// --- backup exporter -------------------------------------------------------

BackupExporter::BackupExporter(asio::io_context& io, const NodeConfig& cfg, Metrics& metrics)
    : io_(io), cfg_(cfg), metrics_(metrics), s3_(make_s3(io, cfg.fallback)), timer_(io) {}

void BackupExporter::update(json::object stored_doc, int64_t revision) {
  bool first = !have_doc_;
  doc_ = std::move(stored_doc);
  revision_ = revision;
  have_doc_ = true;
  if (first) timer_.cancel();  // export right after the first full sync
}

void BackupExporter::start() {
  asio::co_spawn(io_, loop(), [](std::exception_ptr e) {
    if (e) try { std::rethrow_exception(e); } catch (const std::exception& ex) { log::error("backup exporter stopped: {}", ex.what()); }
  });
}

void BackupExporter::stop() {
  stopped_ = true;
  timer_.cancel();
}

asio::awaitable<void> BackupExporter::loop() {
  while (!stopped_) {
    if (have_doc_) co_await export_once();
    if (stopped_) break;
    timer_.expires_after(std::chrono::milliseconds(static_cast<int64_t>(cfg_.fallback.interval * 1000)));
    co_await timer_.async_wait(tok);
  }
}

asio::awaitable<void> BackupExporter::export_once() {
  const auto& f = cfg_.fallback;
  const auto t0 = std::chrono::steady_clock::now();
  auto fail = [&](const std::string& reason, const std::string& msg) {
    metrics_.fail(reason);
    // The credential provider already logged a credentials failure once.
    if (msg != last_error_ && reason != "NoCredentials") log::error("backup export failed: {}", msg);
    last_error_ = msg;
  };
  json::object resources = resource_object(doc_);
  if (resource_count(resources) == 0) {
    // An empty export would wipe every traffic node's fallback: refuse it.
    fail("empty", "the configuration is empty; not exporting an empty snapshot");
    co_return;
  }
  const std::string resource_body = json::serialize(resources);
  const std::string config_body = config_object(revision_, cfg_.keyring, cfg_.encrypt_fields);
  const std::string rsha = aws::sha256_hex(resource_body), csha = aws::sha256_hex(config_body);

  // Current manifest: never overwrite a newer revision; skip unchanged content.
  auto cur = co_await s3_->get(f.resource_bucket, manifest_key(f.gateway_group_id));
  std::optional<Manifest> existing;
  std::string existing_etag;
  if (cur.ok()) {
    auto m = parse_manifest(cur.value->body);
    if (m) { existing = *m; existing_etag = cur.value->etag; }
  } else if (!cur.failure.not_found() && cur.failure.code != "AccessDenied") {
    fail(cur.failure.code.empty() ? "s3" : cur.failure.code, cur.failure.message);
    co_return;
  }
  // Without s3:ListBucket, S3 answers a missing key with 403 AccessDenied:
  // treat it as "no manifest yet". The create-only (If-None-Match) write of
  // the manifest below keeps that safe: it cannot replace an existing one.
  if (existing && existing->revision > revision_) {
    fail("newer_revision_in_bucket", fmt::format("the bucket holds revision {} which is newer than ours ({}); not overwriting",
                                                 existing->revision, revision_));
    co_return;
  }
  Manifest m;
  m.gateway_group_id = f.gateway_group_id;
  m.revision = revision_;
  m.producer = hostname();
  m.producer_version = HOLDFAST_VERSION;
  m.heartbeat_at = now_unix();
  m.resource = ObjectRef{f.resource_bucket, resource_key(f.gateway_group_id, rsha), rsha, resource_body.size()};
  m.config = ObjectRef{f.config_bucket, config_key(f.gateway_group_id, csha), csha, config_body.size()};
  bool unchanged = existing && existing->resource.sha256 == rsha && existing->config.sha256 == csha;
  // A bucket lifecycle rule expires old immutable objects by age: upload the
  // live ones again now and then so unchanged content never ages out.
  constexpr int64_t kRefreshSeconds = 12 * 3600;
  if (unchanged && now_unix() - last_upload_unix_ > kRefreshSeconds) unchanged = false;
  m.created_at = unchanged ? existing->created_at : now_unix();
  if (unchanged) m.revision = std::max(existing->revision, revision_);
  sign_manifest(m, f.signing_key);
  uint64_t bytes = 0;
  const bool existing_same_content = existing && existing->resource.sha256 == rsha && existing->config.sha256 == csha;
  if (!unchanged) {
    // Immutable, content-addressed objects first; the manifest last, so a
    // crash in between leaves the previous manifest pointing at complete data.
    struct Obj { std::string bucket, key; const std::string* body; };
    for (const Obj& o : {Obj{f.resource_bucket, m.resource.key, &resource_body}, Obj{f.config_bucket, m.config.key, &config_body}}) {
      // Create-only, except when refreshing objects a lifecycle rule could expire.
      const bool create_only = conditional_writes_ && !existing_same_content;
      auto r = co_await s3_->put(o.bucket, o.key, *o.body, "application/json",
                                 create_only ? aws::PutCondition::if_none_match : aws::PutCondition::none);
      if (!r.ok() && r.failure.precondition_failed()) continue;  // same content already there
      if (!r.ok() && r.failure.http_status == 501) {
        conditional_writes_ = false;
        log::warn("S3 store does not support conditional writes; falling back to read-check-write (see docs)");
        r = co_await s3_->put(o.bucket, o.key, *o.body, "application/json");
      }
      if (!r.ok()) { fail(r.failure.code.empty() ? "s3" : r.failure.code, r.failure.message); co_return; }
      bytes += o.body->size();
    }
    // API7-compatible names: one object per gateway group in each bucket.
    auto c1 = co_await s3_->put(f.resource_bucket, compat_key(f.gateway_group_id), resource_body, "application/json");
    auto c2 = co_await s3_->put(f.config_bucket, compat_key(f.gateway_group_id), config_body, "application/json");
    if (!c1.ok() || !c2.ok()) {
      const auto& fl = !c1.ok() ? c1.failure : c2.failure;
      fail(fl.code.empty() ? "s3" : fl.code, fl.message);
      co_return;
    }
  } else {
    ++metrics_.uploads_skipped;
  }
  const std::string manifest_body = serialize_manifest(m);
  aws::PutCondition cond = !conditional_writes_ ? aws::PutCondition::none
                           : existing ? aws::PutCondition::if_match : aws::PutCondition::if_none_match;
  auto r = co_await s3_->put(f.resource_bucket, manifest_key(f.gateway_group_id), manifest_body, "application/json", cond,
                             existing_etag);
  if (!r.ok() && r.failure.precondition_failed()) {
    // Another backup node wrote in between: look again next round.
    fail("concurrent_write", "the manifest changed while exporting (another backup node?); retrying next round");
    co_return;
  }
  if (!r.ok()) { fail(r.failure.code.empty() ? "s3" : r.failure.code, r.failure.message); co_return; }
  bytes += manifest_body.size();
  if (!unchanged) last_upload_unix_ = now_unix();
  if (!last_error_.empty()) log::info("backup export works again");
  last_error_.clear();
  metrics_.exports++;
  metrics_.last_export_unix = now_unix();
  metrics_.last_export_revision = m.revision;
  metrics_.last_export_seconds = seconds_since(t0);
  metrics_.last_export_bytes = bytes;
  if (unchanged) log::debug("backup heartbeat: revision {} unchanged", m.revision);
  else log::info("backup exported revision {} ({} resources, {} bytes) to s3://{}/{}", m.revision, resource_count(resources),
                 bytes, f.resource_bucket, manifest_key(f.gateway_group_id));
}

// --- snapshot reader ---------------------------------------------------------

SnapshotReader::SnapshotReader(asio::io_context& io, const NodeConfig& cfg, Metrics& metrics, Apply apply)
    : io_(io), cfg_(cfg), metrics_(metrics), apply_(std::move(apply)), s3_(make_s3(io, cfg.fallback)) {}

asio::awaitable<Result<Loaded>> SnapshotReader::fetch() {
  const auto& f = cfg_.fallback;
  auto man = co_await s3_->get(f.resource_bucket, manifest_key(f.gateway_group_id));
  if (!man.ok()) co_return Error{man.failure.message};
  auto m = parse_manifest(man.value->body);
  if (!m) co_return Error{m.error()};
  if (auto st = verify_manifest(*m, f.gateway_group_id, f.signing_key); !st) co_return Error{st.error()};
  auto ro = co_await s3_->get(m->resource.bucket, m->resource.key);
  if (!ro.ok()) co_return Error{ro.failure.message};
  auto co = co_await s3_->get(m->config.bucket, m->config.key);
  if (!co.ok()) co_return Error{co.failure.message};
  auto loaded = verify_objects(*m, ro.value->body, co.value->body);
  if (!loaded) co_return Error{loaded.error()};
  metrics_.last_import_bytes = ro.value->body.size() + co.value->body.size() + man.value->body.size();
  co_return std::move(*loaded);
}

asio::awaitable<int64_t> SnapshotReader::poll_once(int64_t min_revision) {
  const auto t0 = std::chrono::steady_clock::now();
  auto loaded = co_await fetch();
  if (!loaded) {
    std::string msg = loaded.error();
    std::string reason = msg.find("digest") != std::string::npos ? "digest"
                         : msg.find("HMAC") != std::string::npos || msg.find("signed") != std::string::npos ? "signature"
                         : msg.find("JSON") != std::string::npos || msg.find("manifest") != std::string::npos ? "format"
                                                                                                                : "s3";
    metrics_.fail(reason);
    if (msg != last_error_ && msg.find("AWS credentials") == std::string::npos && msg.find("no credentials") == std::string::npos &&
        msg.find("web identity") == std::string::npos)
      log::error("fallback snapshot not loaded from S3: {}", msg);
    last_error_ = msg;
    co_return 0;
  }
  last_error_.clear();
  if (loaded->manifest.revision <= min_revision) co_return 0;
  std::string id = fmt::format("{}:{}", loaded->manifest.revision, loaded->manifest.resource.sha256);
  if (id == last_rejected_) co_return 0;  // already refused this exact snapshot
  if (!apply_(*loaded, "s3")) {
    last_rejected_ = id;
    metrics_.fail("schema");
    co_return 0;
  }
  metrics_.last_import_unix = now_unix();
  metrics_.last_import_seconds = seconds_since(t0);
  co_return loaded->manifest.revision;
}

}  // namespace holdfast::config::fallback
