// The page of APISIX's Prometheus export server (plugin_attr.prometheus):
// the node-level series of this process (connections and requests of the
// workers, etcd, node info, health-checked upstream nodes, shared dicts),
// then what the prometheus plugin recorded, then Holdfast's own metrics.
#pragma once
#include <memory>
#include <string>
#include <vector>

namespace holdfast::snapshot { struct Snapshot; }
namespace holdfast::config { class EtcdSource; }

namespace holdfast::proxy {

class Worker;

struct ExportInputs {
  const std::vector<std::unique_ptr<Worker>>* workers = nullptr;
  const snapshot::Snapshot* snapshot = nullptr;  // null: nothing loaded yet
  bool etcd_configured = false;                  // config_provider etcd
  const config::EtcdSource* etcd = nullptr;      // its watcher, when there is one
};

std::string prometheus_page(const ExportInputs& in, const std::string& holdfast_metrics);

}  // namespace holdfast::proxy
