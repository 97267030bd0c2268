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
#include <algorithm>
#include <fstream>
#include <sstream>

#include "cloud/aws/sigv4.h"
#include "config/fallback/snapshot_store.h"
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

double retry_delay(double interval, int refused_rounds) {
  if (refused_rounds <= 1) return interval;
  const double cap = std::max(interval, std::min(8 * interval, 300.0));
  return std::min(cap, interval * static_cast<double>(1 << std::min(refused_rounds - 1, 10)));
}

// --- backup exporter -------------------------------------------------------

BackupExporter::BackupExporter(asio::io_context& io, const NodeConfig& cfg, Store store)
    : io_(io),
      cfg_(cfg),
      store_(std::move(store)),
      writer_(store_, cfg.fallback.gateway_group_id, cfg.fallback.signing_key, WriteMode::backup),
      timer_(io) {}

void BackupExporter::update(json::object stored_doc, int64_t revision) {
  bool first = !have_doc_;
  doc_ = std::move(stored_doc);
  revision_ = revision;
  have_doc_ = true;
  if (first) timer_.cancel();  // export right after the first full sync
}

void BackupExporter::start() {
  asio::co_spawn(io_, loop(), [label = store_.label](std::exception_ptr e) {
    if (e) try { std::rethrow_exception(e); } catch (const std::exception& ex) { log::error("backup exporter ({}) stopped: {}", label, ex.what()); }
  });
}

void BackupExporter::stop() {
  stopped_ = true;
  timer_.cancel();
  // An export cut short leaves the store's previous manifest in place: the
  // objects of a snapshot are written before the manifest that names them.
  if (store_.client) store_.client->cancel();
}

asio::awaitable<void> BackupExporter::loop() {
  while (!stopped_) {
    if (have_doc_) {
      co_await export_once();
      ++metrics_.rounds;
    }
    if (stopped_) break;
    const double wait = retry_delay(cfg_.fallback.interval, refused_rounds_);
    timer_.expires_after(std::chrono::milliseconds(static_cast<int64_t>(wait * 1000)));
    co_await timer_.async_wait(tok);
  }
}

asio::awaitable<void> BackupExporter::export_once() {
  const auto& f = cfg_.fallback;
  const auto t0 = std::chrono::steady_clock::now();
  const int refused_before = refused_rounds_;
  refused_rounds_ = 0;
  auto fail = [&](const std::string& reason, const std::string& msg, bool quiet = false) {
    metrics_.fail(reason);
    // `quiet`: the credential provider already logged a credentials failure once.
    if (msg != metrics_.last_error && !quiet) log::error("backup export failed: {}", msg);
    metrics_.last_error = msg;
  };
  json::object resources = resource_object(doc_);
  if (resource_count(resources) == 0) {
    // An empty export would wipe every traffic node's fallback: refuse it.
    fail("empty", store_.label + ": the configuration is empty; not exporting an empty snapshot");
    co_return;
  }
  SnapshotContent content;
  content.resource_body = json::serialize(resources);
  content.config_body = config_object(revision_, cfg_.keyring, cfg_.encrypt_fields);
  content.revision = revision_;
  content.producer = hostname();
  auto out = co_await writer_.write(content);
  using Kind = WriteOutcome::Kind;
  if (out.skipped_objects) ++metrics_.uploads_skipped;
  switch (out.kind) {
    case Kind::newer_in_store:
      fail("newer_revision_in_bucket",
           fmt::format("{}: the bucket holds revision {} which is newer than ours ({}); not overwriting", store_.label,
                       out.store_revision, revision_));
      co_return;
    case Kind::concurrent_write:
      // Another backup node wrote in between: look again next round.
      fail("concurrent_write", store_.label + ": the manifest changed while exporting (another backup node?); "
                               "retrying next round");
      co_return;
    case Kind::store_error:
      if (out.error.kind == cloud::StoreErrorKind::credentials) refused_rounds_ = refused_before + 1;
      fail(out.error.code.empty() ? store_.source : out.error.code, out.error.message,
           out.error.kind == cloud::StoreErrorKind::no_credentials);
      co_return;
    case Kind::written:
    case Kind::heartbeat:
      break;
  }
  const bool unchanged = out.kind == Kind::heartbeat;
  if (!metrics_.last_error.empty()) log::info("backup export to {} works again", store_.label);
  metrics_.last_error.clear();
  metrics_.exports++;
  metrics_.last_export_unix = now_unix();
  metrics_.last_export_revision = out.manifest.revision;
  metrics_.store_revision = out.manifest.revision;
  metrics_.last_export_seconds = seconds_since(t0);
  metrics_.last_export_bytes = out.bytes;
  if (unchanged) log::debug("backup heartbeat to {}: revision {} unchanged", store_.label, out.manifest.revision);
  else log::info("backup exported revision {} ({} resources, {} bytes) to {}", out.manifest.revision, resource_count(resources),
                 out.bytes, store_.client->url(store_.resource_bucket, manifest_key(f.gateway_group_id)));
}

// --- snapshot reader ---------------------------------------------------------

SnapshotReader::SnapshotReader(asio::io_context& io, const NodeConfig& cfg, Store store, int rank, OfferFn offer)
    : io_(io), cfg_(cfg), offer_(std::move(offer)), store_(std::move(store)), rank_(rank), timer_(io) {}

asio::awaitable<void> SnapshotReader::poll_once() {
  const auto t0 = std::chrono::steady_clock::now();
  auto fetched = co_await fetch_snapshot(store_, cfg_.fallback.gateway_group_id, cfg_.fallback.signing_key);
  ++metrics_.rounds;
  refused_rounds_ = fetched.refused ? refused_rounds_ + 1 : 0;
  if (!fetched.ok()) {
    metrics_.fail(fetched.reason);
    // The credential provider already logged a credentials failure once.
    if (fetched.error != metrics_.last_error && !fetched.quiet)
      log::error("fallback snapshot not loaded from {}: {}", store_.label, fetched.error);
    metrics_.last_error = fetched.error;
    co_return;
  }
  if (!metrics_.last_error.empty()) log::info("fallback snapshot from {} readable again", store_.label);
  metrics_.last_error.clear();
  const Loaded& loaded = *fetched.snapshot;
  metrics_.store_revision = loaded.manifest.revision;
  std::string id = fmt::format("{}:{}", loaded.manifest.revision, loaded.manifest.resource.sha256);
  if (id == last_rejected_) co_return;  // already refused this exact snapshot
  switch (offer_(loaded, *this)) {
    case Offer::not_newer:
      co_return;
    case Offer::rejected:
      last_rejected_ = id;
      metrics_.fail("schema");
      co_return;
    case Offer::applied:
      break;
  }
  metrics_.last_import_bytes = fetched.bytes;
  metrics_.last_import_unix = now_unix();
  metrics_.last_import_seconds = seconds_since(t0);
}

}  // namespace holdfast::config::fallback
