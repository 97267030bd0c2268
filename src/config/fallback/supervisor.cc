#include "config/fallback/supervisor.h"

#include <fmt/format.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include "core/data_encryption.h"
#include "core/log.h"

namespace holdfast::config::fallback {
namespace asio = boost::asio;
namespace json = boost::json;
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

namespace {
void log_failure(std::exception_ptr e) {
  if (e) try { std::rethrow_exception(e); } catch (const std::exception& ex) { log::error("fallback: {}", ex.what()); }
}
int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace

Supervisor::Supervisor(asio::io_context& io, const NodeConfig& cfg, Manager& mgr)
    : io_(io), cfg_(cfg), mgr_(mgr), startup_timer_(io), poll_timer_(io) {
  const auto& f = cfg.fallback;
  s3_primary_ = f.enabled && !f.write && (cfg.config_provider == "json" || cfg.config_provider == "yaml");
  if (!s3_primary_) {
    etcd_ = std::make_unique<EtcdSource>(io, cfg.etcd, [this](json::value doc, const std::string& rev) {
      int64_t r = 0;
      try { r = std::stoll(rev); } catch (...) {}
      bool ok = apply_stored(std::move(doc.as_object()), cfg_.keyring, "etcd", r, false);
      return ok ? Status{} : Status{Error{"rejected"}};
    });
    etcd_->on_reachability = [this](bool reachable) {
      if (reachable || !reader_) return;
      // etcd is known to be down (not just slow): fall back now — the local
      // cache first, then S3 — instead of waiting for the start-up deadline.
      if (!mgr_.current()) apply_cache();
      start_polling();
    };
  }
  if (f.enabled && f.write) exporter_ = std::make_unique<BackupExporter>(io, cfg, metrics_);
  if (f.enabled && !f.write)
    reader_ = std::make_unique<SnapshotReader>(io, cfg, metrics_, [this](const Loaded& snap, const std::string& source) {
      // The snapshot's own keyring decrypts what the CP encrypted; ours is a fallback.
      std::vector<std::string> ring = snap.keyring;
      for (const auto& k : cfg_.keyring) ring.push_back(k);
      bool ok = apply_stored(snap.resources, ring, source, snap.manifest.revision, true);
      if (ok) {
        metrics_.snapshot_revision = snap.manifest.revision;
        metrics_.snapshot_created_at = snap.manifest.created_at;
      }
      return ok;
    });
}

Supervisor::~Supervisor() = default;

bool Supervisor::apply_stored(json::object stored, const std::vector<std::string>& keyring,
                              const std::string& source, int64_t revision, bool strict) {
  // Decrypted values are never logged. The stored (encrypted) form is what
  // the cache and the backup keep; without them, decrypt in place (no copy of
  // a possibly large document).
  const bool keep_stored = reader_ || exporter_;
  try {
    json::value plain = keep_stored ? json::value(stored) : json::value(std::move(stored));
    data_encryption::decrypt_document(plain.as_object(), keyring);
    if (!mgr_.apply(plain, source, std::to_string(revision), strict)) return false;
  } catch (const std::bad_alloc&) {
    log::error("configuration from {} (revision {}) rejected, keeping the previous one: out of memory while loading it",
               source, revision);
    return false;
  }
  applied_revision_ = revision;
  if (keep_stored) {
    // Last-known-good on disk, written after every applied configuration.
    CacheEntry e{stored, keyring, revision, now_unix(), source};
    if (auto w = write_cache(cfg_.fallback.cache_file, e); !w) {
      metrics_.fail("cache_write");
      log::warn("fallback cache not written: {}", w.error());
    }
    if (exporter_ && source == "etcd") exporter_->update(std::move(stored), revision);
  }
  return true;
}

bool Supervisor::apply_cache() {
  auto e = read_cache(cfg_.fallback.cache_file);
  if (!e) {
    log::warn("fallback: {}", e.error());
    return false;
  }
  if (e->revision <= applied_revision_) return false;
  if (!apply_stored(e->resources, e->keyring, "cache", e->revision, true)) {
    metrics_.fail("cache_invalid");
    return false;
  }
  metrics_.snapshot_revision = e->revision;
  metrics_.snapshot_created_at = e->created_at;
  log::info("fallback: serving the local last-known-good configuration (revision {})", e->revision);
  return true;
}

void Supervisor::start() {
  if (etcd_) etcd_->start();
  if (exporter_) exporter_->start();
  if (!reader_) return;
  if (s3_primary_) {
    apply_cache();
    start_polling();
    return;
  }
  // Give etcd a bounded time at start-up, then fall back.
  startup_timer_.expires_after(std::chrono::milliseconds(static_cast<int64_t>(cfg_.etcd.startup_timeout * 1000)));
  startup_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || stopped_ || (etcd_ && etcd_->loaded())) return;
    log::warn("etcd did not answer within {}s; loading the newest fallback snapshot", cfg_.etcd.startup_timeout);
    apply_cache();
    start_polling();
  });
}

void Supervisor::stop() {
  stopped_ = true;
  startup_timer_.cancel();
  poll_timer_.cancel();
  if (etcd_) etcd_->stop();
  if (exporter_) exporter_->stop();
}

void Supervisor::start_polling() {
  if (polling_ || stopped_) return;
  polling_ = true;
  asio::co_spawn(io_, poll_loop(), log_failure);
}

asio::awaitable<void> Supervisor::poll_loop() {
  while (!stopped_) {
    // Back on etcd: it drives the configuration again.
    if (!s3_primary_ && etcd_ && etcd_->reachable() && etcd_->loaded()) break;
    co_await reader_->poll_once(applied_revision_);
    const double wait = retry_delay(cfg_.fallback.interval, reader_->refused_rounds());
    poll_timer_.expires_after(std::chrono::milliseconds(static_cast<int64_t>(wait * 1000)));
    co_await poll_timer_.async_wait(tok);
  }
  polling_ = false;
}

std::string Supervisor::prometheus(const std::string& source, int64_t snapshot_age_seconds) const {
  std::string out;
  auto gauge = [&](const char* name, const char* help, auto value, const std::string& labels = "") {
    out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{}{} {}\n", name, help, name, name, labels, value);
  };
  // The configured store's source name: s3 or azure_blob.
  const std::string store_source = cfg_.fallback.store == "azure_blob" ? "azure_blob" : "s3";
  for (const std::string& s : {std::string("etcd"), store_source, std::string("cache"), std::string("file")})
    out += fmt::format("holdfast_config_source{{source=\"{}\"}} {}\n", s, source == s ? 1 : 0);
  gauge("holdfast_config_revision", "Revision of the configuration in use", applied_revision_);
  gauge("holdfast_config_age_seconds", "Seconds since the configuration in use was applied", snapshot_age_seconds);
  gauge("holdfast_fallback_snapshot_revision", "Revision of the last snapshot loaded from the store or the cache",
        metrics_.snapshot_revision);
  gauge("holdfast_fallback_snapshot_created_timestamp_seconds", "When the loaded snapshot was exported",
        metrics_.snapshot_created_at);
  gauge("holdfast_backup_last_export_timestamp_seconds", "Last successful export (write mode)", metrics_.last_export_unix);
  gauge("holdfast_backup_last_export_revision", "Revision of the last successful export", metrics_.last_export_revision);
  gauge("holdfast_backup_export_duration_seconds", "Duration of the last export", metrics_.last_export_seconds);
  gauge("holdfast_backup_export_bytes", "Bytes uploaded by the last export", metrics_.last_export_bytes);
  gauge("holdfast_backup_exports_total", "Successful exports", metrics_.exports);
  gauge("holdfast_backup_uploads_skipped_total", "Exports that only refreshed the heartbeat", metrics_.uploads_skipped);
  gauge("holdfast_fallback_import_duration_seconds", "Duration of the last snapshot import", metrics_.last_import_seconds);
  gauge("holdfast_fallback_import_bytes", "Bytes read by the last snapshot import", metrics_.last_import_bytes);
  out += "# HELP holdfast_fallback_failures_total Failures by reason\n# TYPE holdfast_fallback_failures_total counter\n";
  for (const auto& [reason, n] : metrics_.failures)
    out += fmt::format("holdfast_fallback_failures_total{{reason=\"{}\"}} {}\n", reason, n);
  if (etcd_) gauge("holdfast_etcd_reachable", "1 when etcd answers", etcd_->reachable() ? 1 : 0);
  uint64_t cred_failures = 0, cred_refreshes = 0;
  const Store* stores[] = {exporter_ ? &exporter_->store() : nullptr, reader_ ? &reader_->store() : nullptr};
  for (const Store* s : stores) {
    if (!s || s->name != "aws_s3") continue;
    auto st = s->client->credential_stats();
    cred_failures += st.failures;
    cred_refreshes += st.refreshes;
  }
  gauge("holdfast_aws_credential_refresh_failures_total", "Failed attempts to obtain AWS credentials", cred_failures);
  gauge("holdfast_aws_credential_refreshes_total", "AWS credentials obtained or refreshed", cred_refreshes);
  return out;
}

}  // namespace holdfast::config::fallback
