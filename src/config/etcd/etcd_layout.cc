#include "config/etcd/etcd_layout.h"

#include <boost/json.hpp>

#include "core/budgets.h"
#include "core/log.h"

namespace holdfast::config {
namespace json = boost::json;

namespace {
const char* const kDirs[] = {"routes", "services", "upstreams", "consumers", "ssls", "plugin_configs", "global_rules",
                             "consumer_groups", "plugin_metadata", "protos", "secrets", "stream_routes"};
}

json::value parse_etcd_value(const std::string& key, const std::string& raw) {
  if (raw == "init_dir" || raw.empty()) return nullptr;
  // One value is one resource: the per-resource budget applies here, where it enters.
  auto v = budgets::parse_json(raw, budgets::resource());
  if (!v) {
    log::warn("etcd key {}: value is not a JSON object ({}), skipped", key, v.error());
    return nullptr;
  }
  // Resources are objects; the enabled-plugin list (<prefix>/plugins) is an array.
  if (!(v->is_object() || v->is_array())) {
    log::warn("etcd key {}: value is not a JSON object, skipped", key);
    return nullptr;
  }
  return std::move(*v);
}

bool in_document(std::string_view key, std::string_view prefix) {
  if (key.size() <= prefix.size() + 1 || key.substr(0, prefix.size()) != prefix || key[prefix.size()] != '/')
    return false;
  std::string_view rest = key.substr(prefix.size() + 1);
  if (rest == "plugins") return true;
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return false;
  const std::string_view dir = rest.substr(0, slash);
  for (const char* d : kDirs)
    if (dir == d) return true;
  return false;
}

json::object build_document(const std::map<std::string, json::value>& kv, const std::string& prefix) {
  json::object doc;
  for (const char* d : kDirs) doc[d] = json::array();
  const std::string base = prefix + "/";
  for (const auto& [key, stored] : kv) {
    if (key.compare(0, base.size(), base) != 0) continue;
    std::string rest = key.substr(base.size());  // "routes/1"
    if (rest == "plugins") {
      // The enabled-plugin list [{"name":...}, ...]: the same shape as the
      // `plugins:` list of a standalone apisix.yaml, so it travels under the
      // same document key (and into fallback snapshots with the rest).
      if (stored.is_array()) doc["plugins"] = stored;
      continue;
    }
    auto slash = rest.find('/');
    if (slash == std::string::npos || slash + 1 >= rest.size()) continue;  // gen_id, dir markers
    std::string dir = rest.substr(0, slash);
    std::string id = rest.substr(slash + 1);
    auto it = doc.find(dir);
    if (it == doc.end()) continue;  // data_plane/server_info and unknown directories
    bool credential = false;
    if (dir == "consumers") {
      auto c = id.find('/');
      if (c != std::string::npos) {
        if (id.compare(c, 13, "/credentials/") != 0 || id.size() <= c + 13) continue;
        credential = true;
      }
    } else if (dir == "services" && id.find('/') != std::string::npos) {
      continue;  // graphql cost decorations and other sub-resources
    }
    if (!stored.is_object()) continue;
    json::value v = stored;  // a copy: the document is handed over and modified
    auto& o = v.as_object();
    if (dir == "consumers" && !credential) {
      if (!o.contains("username")) o["username"] = id;
      o.erase("id");
    } else {
      o["id"] = id;  // the key is authoritative, as in APISIX
    }
    it->value().as_array().push_back(std::move(v));
  }
  return doc;
}

}  // namespace holdfast::config
