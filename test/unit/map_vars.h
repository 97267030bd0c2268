// Request variables from a map, for router and expression unit tests.
#pragma once
#include <map>
#include <optional>
#include <string>

#include "router/vars.h"

namespace holdfast::testing {

struct MapVars : router::VarSource {
  std::map<std::string, std::string> m;
  std::optional<std::string> var(std::string_view n) const override {
    auto it = m.find(std::string(n));
    if (it == m.end()) return std::nullopt;
    return it->second;
  }
};

}  // namespace holdfast::testing
