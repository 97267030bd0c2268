// PATCH semantics of the Admin API (APISIX core.table.merge / patch):
// objects merge recursively, arrays and scalars are replaced, null deletes.
#pragma once
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <string_view>

#include "core/status.h"

namespace holdfast::admin {

// Deep-merges `patch` into `target`. Nulls delete the field (and are
// dropped from objects the patch introduces).
void merge_patch(boost::json::object& target, const boost::json::object& patch);

// Replaces the attribute at `sub_path` ("a/b/c") with `v` (null deletes it).
// Missing intermediate objects are created; a non-object on the way is an
// error `invalid sub-path: /a/b`, as in APISIX.
Status patch_sub_path(boost::json::object& root, std::string_view sub_path, const boost::json::value& v);

}  // namespace holdfast::admin
