// The config manager: the only place that turns source documents into a
// published snapshot. Runs on the control thread. A candidate that cannot be
// compiled never replaces the current snapshot.
#pragma once
#include <boost/json/value.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "config/snapshot.h"
#include "core/config.h"

namespace holdfast::config {

class Manager {
 public:
  using Publish = std::function<void(std::shared_ptr<const Snapshot>)>;
  Manager(const NodeConfig& cfg, Publish publish) : cfg_(cfg), publish_(std::move(publish)) {}

  // Compiles and publishes. Returns the error (and keeps the current
  // snapshot) when the document as a whole is unusable.
  // `strict`: a document with any invalid resource is rejected whole (used
  // for fallback snapshots, which must be complete); otherwise invalid
  // resources are skipped, as APISIX does for etcd and files.
  Status apply(const boost::json::value& doc, const std::string& source, const std::string& revision,
               bool strict = false);
  std::shared_ptr<const Snapshot> current() const;
  uint64_t rejected() const { return rejected_; }

 private:
  const NodeConfig& cfg_;
  Publish publish_;
  mutable std::mutex mu_;
  std::shared_ptr<const Snapshot> current_;
  uint64_t version_ = 0;
  uint64_t rejected_ = 0;
};

}  // namespace holdfast::config
