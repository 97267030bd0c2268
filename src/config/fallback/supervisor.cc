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
    : io_(io), cfg_(cfg), mgr_(mgr), startup_timer_(io) {
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
      if (reachable || readers_.empty()) return;
      // etcd is known to be down (not just slow): fall back now — the local
      // cache first, then the stores — instead of waiting for the start-up deadline.
      if (!mgr_.current()) apply_cache();
      start_polling();
    };
  }
  if (!f.enabled) return;
  int rank = 0;
  for (const auto& name : f.stores) {
    if (f.write) {
      exporters_.push_back(std::make_unique<BackupExporter>(io, cfg, make_store(io, f, name)));
    } else {
      readers_.push_back(std::make_unique<SnapshotReader>(
          io, cfg, make_store(io, f, name), rank,
          [this](const Loaded& snap, const SnapshotReader& from) { return offer(snap, from); }));
    }
    ++rank;
  }
}

Supervisor::~Supervisor() = default;

bool Supervisor::apply_stored(json::object stored, const std::vector<std::string>& keyring,
                              const std::string& source, int64_t revision, bool strict) {
  // Decrypted values are never logged. The stored (encrypted) form is what
  // the cache and the backup keep; without them, decrypt in place (no copy of
  // a possibly large document).
  const bool keep_stored = !readers_.empty() || !exporters_.empty();
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
  applied_rank_ = -1;
  if (keep_stored) {
    // Last-known-good on disk, written after every applied configuration.
    CacheEntry e{stored, keyring, revision, now_unix(), source};
    if (auto w = write_cache(cfg_.fallback.cache_file, e); !w) {
      metrics_.fail("cache_write");
      log::warn("fallback cache not written: {}", w.error());
    }
    if (source == "etcd")
      for (auto& e : exporters_) e->update(stored, revision);
  }
  return true;
}

bool Supervisor::apply_cache() {
  auto e = read_cache(cfg_.fallback.cache_file);
  if (!e) {
    log::warn("fallback: {}", e.error());
    return false;
  }
  if (e->revision <= applied_revision_) return false;  // what the cache holds was applied already
  if (!apply_stored(e->resources, e->keyring, "cache", e->revision, true)) {
    metrics_.fail("cache_invalid");
    return false;
  }
  metrics_.snapshot_revision = e->revision;
  metrics_.snapshot_created_at = e->created_at;
  log::info("fallback: serving the local last-known-good configuration (revision {})", e->revision);
  return true;
}

// A valid snapshot from one store, as soon as it arrives: applied when its
// revision is above the one in use, or equal to it but from a store listed
// before the one that served it (ties go to the first store). Never down.
SnapshotReader::Offer Supervisor::offer(const Loaded& snap, const SnapshotReader& from) {
  using Offer = SnapshotReader::Offer;
  const int64_t rev = snap.manifest.revision;
  if (stopped_ || etcd_back()) return Offer::not_newer;
  const bool tie_won = rev == applied_revision_ && applied_rank_ >= 0 && from.rank() < applied_rank_;
  if (rev < applied_revision_ || (rev == applied_revision_ && !tie_won)) return Offer::not_newer;
  // The snapshot's own keyring decrypts what the CP encrypted; ours is a fallback.
  std::vector<std::string> ring = snap.keyring;
  for (const auto& k : cfg_.keyring) ring.push_back(k);
  if (!apply_stored(snap.resources, ring, from.store().source, rev, true)) return Offer::rejected;
  applied_rank_ = from.rank();
  metrics_.snapshot_revision = rev;
  metrics_.snapshot_created_at = snap.manifest.created_at;
  return Offer::applied;
}

bool Supervisor::etcd_back() const { return !s3_primary_ && etcd_ && etcd_->reachable() && etcd_->loaded(); }

void Supervisor::start() {
  if (etcd_) etcd_->start();
  for (auto& e : exporters_) e->start();
  if (readers_.empty()) return;
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
  for (auto& r : readers_) {
    r->timer().cancel();
    // A poll waiting on a store that hangs would hold the shutdown up to
    // the stop watchdog.
    if (r->store().client) r->store().client->cancel();
  }
  if (etcd_) etcd_->stop();
  for (auto& e : exporters_) e->stop();
}

// Every store at once, each in its own loop: a store that hangs or fails
// holds up only its own loop. A loop still waiting on its store from an
// earlier fallback keeps going and is not started twice.
void Supervisor::start_polling() {
  if (stopped_) return;
  for (auto& r : readers_) {
    if (r->polling) continue;
    r->polling = true;
    // However the loop ends (an exception included), the store can be
    // polled again at the next fallback.
    asio::co_spawn(io_, poll_loop(*r), [r = r.get()](std::exception_ptr e) {
      r->polling = false;
      log_failure(e);
    });
  }
}

asio::awaitable<void> Supervisor::poll_loop(SnapshotReader& reader) {
  while (!stopped_) {
    // Back on etcd: it drives the configuration again.
    if (etcd_back()) break;
    co_await reader.poll_once();
    if (stopped_) break;
    const double wait = retry_delay(cfg_.fallback.interval, reader.refused_rounds());
    reader.timer().expires_after(std::chrono::milliseconds(static_cast<int64_t>(wait * 1000)));
    co_await reader.timer().async_wait(tok);
  }
}

std::string Supervisor::prometheus(const std::string& source, int64_t snapshot_age_seconds) const {
  std::string out;
  auto gauge = [&](const char* name, const char* help, auto value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, help, name, name, value);
  };
  // The stores' metrics: one series per store, labelled with its key.
  std::vector<std::pair<const Store*, const StoreMetrics*>> stores;
  for (const auto& e : exporters_) stores.emplace_back(&e->store(), &e->metrics());
  for (const auto& r : readers_) stores.emplace_back(&r->store(), &r->metrics());
  auto per_store = [&](const char* name, const char* help, const char* type, auto field) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    for (const auto& [st, m] : stores) out += fmt::format("{}{{store=\"{}\"}} {}\n", name, st->name, field(*m));
  };
  out += "# HELP holdfast_config_source Where the configuration in use came from\n# TYPE holdfast_config_source gauge\n";
  std::vector<std::string> sources{"etcd"};
  for (const auto& [st, m] : stores) sources.push_back(st->source);
  sources.insert(sources.end(), {"cache", "file"});
  for (const std::string& s : sources)
    out += fmt::format("holdfast_config_source{{source=\"{}\"}} {}\n", s, source == s ? 1 : 0);
  gauge("holdfast_config_revision", "Revision of the configuration in use", applied_revision_);
  gauge("holdfast_config_age_seconds", "Seconds since the configuration in use was applied", snapshot_age_seconds);
  gauge("holdfast_fallback_snapshot_revision", "Revision of the last snapshot loaded from a store or the cache",
        metrics_.snapshot_revision);
  gauge("holdfast_fallback_snapshot_created_timestamp_seconds", "When the loaded snapshot was exported",
        metrics_.snapshot_created_at);
  if (!stores.empty()) {
    per_store("holdfast_fallback_store_revision", "Revision of the last valid snapshot read from or written to the store",
              "gauge", [](const StoreMetrics& m) { return m.store_revision; });
    per_store("holdfast_fallback_store_ok", "1 when the store's last round worked (0 before the first)", "gauge",
              [](const StoreMetrics& m) { return m.ok() ? 1 : 0; });
  }
  if (!exporters_.empty()) {
    per_store("holdfast_backup_last_export_timestamp_seconds", "Last successful export (write mode)", "gauge",
              [](const StoreMetrics& m) { return m.last_export_unix; });
    per_store("holdfast_backup_last_export_revision", "Revision of the last successful export", "gauge",
              [](const StoreMetrics& m) { return m.last_export_revision; });
    per_store("holdfast_backup_export_duration_seconds", "Duration of the last export", "gauge",
              [](const StoreMetrics& m) { return m.last_export_seconds; });
    per_store("holdfast_backup_export_bytes", "Bytes uploaded by the last export", "gauge",
              [](const StoreMetrics& m) { return m.last_export_bytes; });
    per_store("holdfast_backup_exports_total", "Successful exports", "counter",
              [](const StoreMetrics& m) { return m.exports; });
    per_store("holdfast_backup_uploads_skipped_total", "Exports that only refreshed the heartbeat", "counter",
              [](const StoreMetrics& m) { return m.uploads_skipped; });
  }
  if (!readers_.empty()) {
    per_store("holdfast_fallback_import_duration_seconds", "Duration of the last snapshot import from the store",
              "gauge", [](const StoreMetrics& m) { return m.last_import_seconds; });
    per_store("holdfast_fallback_import_bytes", "Bytes read by the last snapshot import from the store", "gauge",
              [](const StoreMetrics& m) { return m.last_import_bytes; });
  }
  out += "# HELP holdfast_fallback_failures_total Failures by store and reason\n# TYPE holdfast_fallback_failures_total counter\n";
  for (const auto& [reason, n] : metrics_.failures)
    out += fmt::format("holdfast_fallback_failures_total{{reason=\"{}\"}} {}\n", reason, n);
  for (const auto& [st, m] : stores)
    for (const auto& [reason, n] : m->failures)
      out += fmt::format("holdfast_fallback_failures_total{{store=\"{}\",reason=\"{}\"}} {}\n", st->name, reason, n);
  if (etcd_) gauge("holdfast_etcd_reachable", "1 when etcd answers", etcd_->reachable() ? 1 : 0);
  uint64_t cred_failures = 0, cred_refreshes = 0;
  for (const auto& [st, m] : stores) {
    if (st->name != "aws_s3") continue;
    auto cs = st->client->credential_stats();
    cred_failures += cs.failures;
    cred_refreshes += cs.refreshes;
  }
  gauge("holdfast_aws_credential_refresh_failures_total", "Failed attempts to obtain AWS credentials", cred_failures);
  gauge("holdfast_aws_credential_refreshes_total", "AWS credentials obtained or refreshed", cred_refreshes);
  return out;
}

json::object Supervisor::stores_status() const {
  json::object out;
  auto entry = [](const Store& st, const StoreMetrics& m) {
    json::object o;
    o["source"] = st.source;
    o["revision"] = m.store_revision;
    o["ok"] = m.ok();
    if (!m.last_error.empty()) o["error"] = m.last_error;
    return o;
  };
  for (const auto& e : exporters_) {
    json::object o = entry(e->store(), e->metrics());
    o["last_export_unix"] = e->metrics().last_export_unix;
    out[e->store().name] = std::move(o);
  }
  for (const auto& r : readers_) out[r->store().name] = entry(r->store(), r->metrics());
  return out;
}

}  // namespace holdfast::config::fallback
