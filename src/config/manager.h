// The config manager: the only place that turns source documents into a
// published snapshot. Runs on the control thread. A candidate that cannot be
// compiled never replaces the current snapshot.
#pragma once
#include <boost/json/value.hpp>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "snapshot/snapshot.h"
#include "core/config.h"

namespace holdfast::config {

using snapshot::CompileOptions;
using snapshot::Snapshot;
using snapshot::compile_snapshot;

class Manager {
 public:
  using Publish = std::function<void(std::shared_ptr<const Snapshot>)>;
  Manager(const NodeConfig& cfg, Publish publish);
  ~Manager();

  // Compiles and publishes. Returns the error (and keeps the current
  // snapshot) when the document as a whole is unusable.
  // `strict`: a document with any invalid resource is rejected whole (used
  // for fallback snapshots, which must be complete); otherwise invalid
  // resources are skipped, as APISIX does for etcd and files.
  Status apply(const boost::json::value& doc, const std::string& source, const std::string& revision,
               bool strict = false);
  std::shared_ptr<const Snapshot> current() const;
  uint64_t rejected() const { return rejected_; }
  // Hands retired snapshots that nobody uses any more to the reaper thread.
  // Called after each apply and periodically by the control loop.
  void reap();
  // Node host names are resolved through `r` (owned by the caller, outlives
  // the manager); without one only IP nodes have addresses.
  void set_resolver(dns::Resolver* r) { resolver_ = r; }
  // Rebuilds and publishes the current document again: the resolver calls
  // this when addresses of names in use changed.
  void refresh();

 private:
  const NodeConfig& cfg_;
  Publish publish_;
  mutable std::mutex mu_;
  std::shared_ptr<const Snapshot> current_;
  uint64_t version_ = 0;
  uint64_t rejected_ = 0;
  dns::Resolver* resolver_ = nullptr;
  // The document behind the current snapshot, kept only when it has node
  // names, so that new addresses can be compiled in without the source.
  std::optional<boost::json::value> names_doc_;
  std::string names_source_, names_revision_;
  bool names_strict_ = false;
  // A replaced snapshot is kept here until workers have let go of it, so the
  // last reference is never dropped on a worker (destroying 10k routes takes
  // milliseconds) nor on the control thread: a reaper thread frees it.
  std::vector<std::shared_ptr<const Snapshot>> retired_;
  std::mutex reap_mu_;
  std::condition_variable reap_cv_;
  std::vector<std::shared_ptr<const Snapshot>> to_free_;
  bool stopping_ = false;
  std::thread reaper_;
};

}  // namespace holdfast::config
