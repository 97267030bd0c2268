#include "config/etcd/etcd_source.h"

#include <fmt/format.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <random>

#include "config/etcd/etcd_layout.h"
#include "core/log.h"

namespace holdfast::config {
namespace asio = boost::asio;
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

EtcdOptions EtcdSource::options_from(const EtcdConfig& cfg) {
  EtcdOptions o;
  o.hosts = cfg.hosts;
  o.prefix = cfg.prefix;
  o.timeout = cfg.timeout;
  o.user = cfg.user;
  o.password = cfg.password;
  o.tls.verify = cfg.tls_verify;
  o.tls.cert_file = cfg.tls_cert;
  o.tls.key_file = cfg.tls_key;
  o.tls.ca_file = cfg.tls_ca;
  o.tls.sni = cfg.tls_sni;
  return o;
}

EtcdSource::EtcdSource(asio::io_context& io, const EtcdConfig& cfg, Apply apply)
    : io_(io), cfg_(cfg), apply_(std::move(apply)), flush_timer_(io), retry_timer_(io) {
  client_ = std::make_unique<EtcdClient>(io.get_executor(), options_from(cfg));
}

EtcdSource::~EtcdSource() = default;

void EtcdSource::start() {
  asio::co_spawn(io_, run(), [](std::exception_ptr e) {
    if (e) try { std::rethrow_exception(e); } catch (const std::exception& ex) { log::error("etcd source stopped: {}", ex.what()); }
  });
}

void EtcdSource::stop() {
  stopped_ = true;
  client_->cancel();
  retry_timer_.cancel();
  flush_timer_.cancel();
}

// The outage is logged once when it starts and once when it ends, not per retry.
// The outage is logged once when it starts and once when it ends, not per retry.
void EtcdSource::set_reachable(bool r, const std::string& why) {
  if (reported_ && reachable_ == r) return;
  reported_ = true;
  reachable_ = r;
  if (r) log::info("etcd reachable at {} (revision {})", client_->current_host(), revision_);
  else log::error("etcd unreachable, keeping the current configuration and retrying: {}", why);
  if (on_reachability) on_reachability(r);
}

asio::awaitable<bool> EtcdSource::full_load() {
  auto r = co_await client_->get_prefix(cfg_.prefix + "/");
  if (!r) {
    set_reachable(false, r.error());
    co_return false;
  }
  kv_.clear();
  for (auto& kv : r->kvs) kv_[kv.key] = parse_etcd_value(kv.key, kv.value);
  revision_ = r->revision;
  set_reachable(true, "");
  dirty_ = true;
  flush();
  co_return true;
}

void EtcdSource::mark_dirty() {
  dirty_ = true;
  if (flush_pending_) return;
  // Coalesce a burst of watch events into one snapshot.
  flush_pending_ = true;
  flush_timer_.expires_after(std::chrono::milliseconds(5));
  flush_timer_.async_wait([this](boost::system::error_code ec) {
    flush_pending_ = false;
    if (!ec) flush();
  });
}

void EtcdSource::flush() {
  if (!dirty_) return;
  dirty_ = false;
  try {
    auto st = apply_(boost::json::value(build_document(kv_, cfg_.prefix)), std::to_string(revision_));
    if (st) loaded_ = true;
  } catch (const std::bad_alloc&) {
    log::error("configuration from etcd (revision {}) rejected, keeping the previous one: out of memory while loading it",
               revision_);
  }
}

asio::awaitable<void> EtcdSource::run() {
  std::mt19937 rng{std::random_device{}()};
  double backoff = std::min(cfg_.resync_delay, 1.0);
  bool need_full = true;
  while (!stopped_) {
    if (need_full) {
      if (!co_await full_load()) {
        if (stopped_) break;
        // capped exponential backoff with up to 50 % jitter
        double delay = backoff * (1.0 + std::uniform_real_distribution<double>(0, 0.5)(rng));
        backoff = std::min(backoff * 2, std::max(cfg_.resync_delay, 1.0) * 6);
        retry_timer_.expires_after(std::chrono::milliseconds(static_cast<int64_t>(delay * 1000)));
        co_await retry_timer_.async_wait(tok);
        continue;
      }
      backoff = std::min(cfg_.resync_delay, 1.0);
      need_full = false;
    }
    bool compacted = false;
    auto st = co_await client_->watch(cfg_.prefix + "/", revision_ + 1, [&](const WatchResponse& wr) {
      if (wr.canceled || wr.compact_revision > 0) {
        log::warn("etcd watch canceled (compact revision {}{}), reloading everything", wr.compact_revision,
                  wr.cancel_reason.empty() ? "" : ", " + wr.cancel_reason);
        compacted = true;
        return false;
      }
      if (wr.created) return true;
      if (wr.revision && wr.revision < revision_) {
        // etcd restored from an older backup: start over
        compacted = true;
        return false;
      }
      bool relevant = false;
      for (const auto& ev : wr.events) {
        if (ev.is_delete) kv_.erase(ev.kv.key);
        else kv_[ev.kv.key] = parse_etcd_value(ev.kv.key, ev.kv.value);
        revision_ = std::max(revision_, ev.kv.mod_revision);
        relevant = relevant || in_document(ev.kv.key, cfg_.prefix);
      }
      if (wr.revision > revision_) revision_ = wr.revision;
      if (relevant) mark_dirty();
      return !stopped_;
    }, cfg_.watch_timeout);
    if (stopped_) break;
    if (compacted) { need_full = true; continue; }
    if (!st && st.error() == "idle timeout") {
      // Re-create the watch at the same revision, on fresh connections.
      client_->drop_idle();
      continue;
    }
    // The stream broke: etcd may be gone. Reload fully once it answers again.
    if (!st) set_reachable(false, st.error());
    need_full = true;
  }
}

}  // namespace holdfast::config
