// Maps etcd keys under the prefix (APISIX_COMPAT §1.1) to the standalone
// document shape the config manager compiles: {"routes":[...], ...}.
#pragma once
#include <boost/json/object.hpp>

#include <map>
#include <string>
#include <string_view>

namespace holdfast::config {

// Parses one stored value once, when it arrives: a JSON object (or array, for
// the plugin list), or null for anything else (directory markers "init_dir"
// silently, others with a log line).
boost::json::value parse_etcd_value(const std::string& key, const std::string& raw);

// Whether a change to `key` can change the document: resource directories
// and the plugin list do; gen_id, data_plane/server_info and other keys
// under the prefix do not (they must not cost a snapshot rebuild).
bool in_document(std::string_view key, std::string_view prefix);

// `kv` holds full keys (e.g. "/apisix/routes/1") and parsed values. Directory
// markers, gen_id, data_plane/* and values that are not
// JSON objects are skipped. Items get `id` = key suffix, as APISIX does;
// credentials become "<username>/credentials/<id>" items of "consumers".
// <prefix>/plugins, the enabled-plugin list, becomes the document's "plugins"
// array, as in a standalone file.
boost::json::object build_document(const std::map<std::string, boost::json::value>& kv, const std::string& prefix);

}  // namespace holdfast::config
