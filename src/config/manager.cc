#include "config/manager.h"

#include "core/log.h"
#include "dns/resolver.h"

#include <new>

namespace holdfast::config {

Manager::Manager(const NodeConfig& cfg, Publish publish) : cfg_(cfg), publish_(std::move(publish)) {
  reaper_ = std::thread([this] {
    std::unique_lock lk(reap_mu_);
    for (;;) {
      reap_cv_.wait(lk, [this] { return stopping_ || !to_free_.empty(); });
      std::vector<std::shared_ptr<const Snapshot>> batch;
      batch.swap(to_free_);
      lk.unlock();
      batch.clear();  // the expensive part, off the control thread
      lk.lock();
      if (stopping_ && to_free_.empty()) return;
    }
  });
}

Manager::~Manager() {
  {
    std::lock_guard lk(reap_mu_);
    stopping_ = true;
  }
  reap_cv_.notify_one();
  reaper_.join();
}

void Manager::reap() {
  std::vector<std::shared_ptr<const Snapshot>> unused;
  for (auto it = retired_.begin(); it != retired_.end();) {
    if (it->use_count() == 1) {
      unused.push_back(std::move(*it));
      it = retired_.erase(it);
    } else {
      ++it;
    }
  }
  if (unused.empty()) return;
  {
    std::lock_guard lk(reap_mu_);
    for (auto& s : unused) to_free_.push_back(std::move(s));
  }
  reap_cv_.notify_one();
}

Status Manager::apply(const boost::json::value& doc, const std::string& source, const std::string& revision,
                      bool strict) {
  CompileOptions opts;
  opts.router = cfg_.router;
  opts.workers = cfg_.workers;
  opts.enabled_plugins = cfg_.plugins;
  auto prev = current();
  opts.previous = prev.get();
  opts.resolver = resolver_;
  opts.trusted_certificate = cfg_.ssl.trusted_certificate;
  opts.keyring = &cfg_.keyring;
  auto t0 = std::chrono::steady_clock::now();
  Result<std::shared_ptr<Snapshot>> snap = Error{""};
  try {
    snap = compile_snapshot(doc, opts);
  } catch (const std::bad_alloc&) {
    // With overcommit the kernel usually kills the process instead; the
    // input budgets are the real defence, this is the last one.
    snap = Error{"out of memory while building the snapshot"};
  }
  if (!snap) {
    ++rejected_;
    log::error("configuration from {} (revision {}) rejected, keeping the previous one: {}", source, revision,
               snap.error());
    return Error{snap.error()};
  }
  if (strict && (*snap)->skipped) {
    ++rejected_;
    log::error("snapshot from {} (revision {}) rejected whole, keeping the current configuration: {}", source, revision,
               (*snap)->first_error);
    return Error{(*snap)->first_error};
  }
  (*snap)->source = source;
  (*snap)->revision = revision;
  (*snap)->applied_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch()).count();
  {
    std::lock_guard lk(mu_);
    (*snap)->version = ++version_;
    if (current_) retired_.push_back(std::move(current_));
    current_ = *snap;
  }
  auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  log::info("configuration applied from {} (revision {}): {} routes, {} upstreams, {} consumers, {} skipped, {:.1f} ms",
            source, revision, (*snap)->routes.size(), (*snap)->upstreams.size(), (*snap)->consumers.by_name.size(),
            (*snap)->skipped, ms);
  if (resolver_) {
    resolver_->retain((*snap)->dns_names);
    if ((*snap)->dns_names.empty()) {
      names_doc_.reset();
    } else if (!names_doc_ || &doc != &*names_doc_) {
      names_doc_ = doc;
      names_source_ = source;
      names_revision_ = revision;
      names_strict_ = strict;
    }
  }
  publish_(*snap);
  reap();
  return {};
}

void Manager::refresh() {
  if (!names_doc_) return;
  log::info("dns: node addresses changed; rebuilding the configuration");
  // apply() sees that the document is the kept one and does not copy it.
  const boost::json::value& doc = *names_doc_;
  const std::string source = names_source_, revision = names_revision_;
  apply(doc, source, revision, names_strict_);
}

std::shared_ptr<const Snapshot> Manager::current() const {
  std::lock_guard lk(mu_);
  return current_;
}

}  // namespace holdfast::config
