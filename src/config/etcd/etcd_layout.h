// Maps etcd keys under the prefix (APISIX_COMPAT §1.1) to the standalone
// document shape the config manager compiles: {"routes":[...], ...}.
#pragma once
#include <boost/json/object.hpp>

#include <map>
#include <string>

namespace holdfast::config {

// `kv` holds full keys (e.g. "/apisix/routes/1") and raw values. Directory
// markers, gen_id, the plugins list, data_plane/* and values that are not
// JSON objects are skipped (the latter with a log line). Items get
// `id` = key suffix, as APISIX does; credentials become
// "<username>/credentials/<id>" items of "consumers".
boost::json::object build_document(const std::map<std::string, std::string>& kv, const std::string& prefix);

}  // namespace holdfast::config
