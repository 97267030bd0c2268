// YAML text -> boost::json, with YAML 1.2 core-schema typing of plain
// scalars, so the model layer only ever sees JSON values.
#pragma once
#include <boost/json/value.hpp>

#include <string>
#include <string_view>

#include "core/status.h"

namespace holdfast {

Result<boost::json::value> yaml_to_json(std::string_view text);

// Replaces ${{VAR}} and ${{VAR:=default}} with environment values, as APISIX
// does. An unset variable without a default is an error naming it.
Result<std::string> substitute_env(std::string_view text);

}  // namespace holdfast
