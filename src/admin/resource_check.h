// The resources the Admin API serves (APISIX_COMPAT §5.2) and their
// validation with APISIX-style messages. Pure functions: what needs etcd
// (referenced ids, duplicate keys) is returned for the caller to check.
#pragma once
#include <boost/json/object.hpp>

#include <string>
#include <vector>

#include "core/status.h"

namespace holdfast::admin {

struct ResourceDef {
  const char* name;     // URL segment and etcd directory ("routes")
  const char* kind;     // in messages ("route", "plugin config")
  bool has_id;          // false: the key comes from `username` / the plugin name
  bool post;            // POST allowed
  bool patch;           // PATCH allowed
  bool timestamps;      // create_time / update_time are maintained
};

// nullptr for an unknown resource. "credentials" is the sub-resource
// consumers/<username>/credentials/<id>.
const ResourceDef* find_resource(std::string_view name);

// A resource another one points to, to be checked for existence:
// `failed to fetch <label> info by <label> id [<id>], response code: 404`.
struct Reference {
  std::string dir;    // etcd directory: "upstreams"
  std::string id;
  std::string label;  // "upstream", "plugin config"
};

struct CheckOptions {
  std::vector<std::string> enabled_plugins;  // empty = every built-in plugin
  std::string secret_manager;                // secrets: vault | aws | gcp
  // Fields a plugin ignores (accepted, as APISIX accepts them), each named;
  // null: not collected.
  std::vector<std::string>* warnings = nullptr;
};

// Validates a full resource value (its `id` already set from the URL) and
// returns the references it holds. The error is the complete `error_msg`
// (e.g. "invalid configuration: property \"uri\" ...", "unknown plugin [x]").
Result<std::vector<Reference>> check_resource(const ResourceDef& def, const boost::json::object& value,
                                              const CheckOptions& opts);

// Who may still point at a resource that is being deleted.
struct ReferenceRule {
  const char* dir;        // where the referencing resources live ("routes")
  const char* field;      // the field holding the id ("upstream_id")
  const char* label;      // "route"
  const char* message;    // "can not delete this upstream" (+ ", route [1] is still using it now")
  // traffic-split's weighted_upstreams[].upstream_id count too ("plugin in
  // route [1]"); `field` may then be null (APISIX's only_check_plugin).
  bool split_refs = false;
};
std::vector<ReferenceRule> delete_rules(const ResourceDef& def);

// Auth plugins whose credential must be unique across consumers, and the
// field that holds it (APISIX admin/utils plugin_key_map).
struct AuthKeyField {
  const char* plugin;
  const char* field;
};
const std::vector<AuthKeyField>& auth_key_fields();

}  // namespace holdfast::admin
