// Secret references in configuration values, as APISIX's secret.lua and
// core/env.lua write them: "$env://NAME" (the variable's value) and
// "$env://NAME/key" (the variable holds a JSON object; its `key`). They are
// resolved when a configuration is compiled into a snapshot, never in the
// stored document, so the local cache and S3 objects keep the reference.
// "$secret://<manager>/<id>/<key>" (Vault, AWS, GCP) is recognised and
// refused: Holdfast has no secret manager yet.
#pragma once
#include <boost/json/fwd.hpp>

#include <string_view>

#include "core/status.h"

namespace holdfast::secret {

// "$env://" in any case (APISIX compares it uppercased) or "$secret://".
bool is_reference(std::string_view s);
// Whether any string inside `v` is a reference.
bool has_reference(const boost::json::value& v);
bool has_reference(const boost::json::object& o);
bool has_reference(const boost::json::array& a);

// Replaces, in place, every string inside `v` that is a reference by what it
// refers to. Fails closed at the first reference that cannot be resolved;
// the error names the reference, never a value it read.
Status resolve(boost::json::value& v);

// A `plugins` object: each plugin's configuration is resolved; the error
// starts with "plugin <name>: ".
Status resolve_plugins(boost::json::object& plugins);

}  // namespace holdfast::secret
