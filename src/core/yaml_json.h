// YAML text -> boost::json, with YAML 1.2 core-schema typing of plain
// scalars, so the model layer only ever sees JSON values. A pure function
// of the text and its budget (fuzz targets call it as is).
#pragma once
#include <boost/json/value.hpp>

#include <string>
#include <string_view>

#include "core/budgets.h"
#include "core/status.h"

namespace holdfast {

// Converts the first YAML document of `text`. Refused with an error, never
// thrown: text over `b.max_bytes`, nesting deeper than `b.max_depth`, aliases
// that expand the document beyond `b.alias_factor` times the nodes parsed so
// far, an alias to a node that contains it, and allocation failure.
Result<boost::json::value> yaml_to_json(std::string_view text, const budgets::Document& b);

// Replaces ${{VAR}} and ${{VAR:=default}} with environment values, as APISIX
// does. An unset variable without a default is an error naming it.
Result<std::string> substitute_env(std::string_view text);

}  // namespace holdfast
