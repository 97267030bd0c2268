// libFuzzer target: YAML text -> JSON (yaml_to_json), the parser behind
// config.yaml, apisix.yaml and the Admin API's YAML bodies. Any input must
// give a value or an error, never an exception, a crash or a hang.
#include <cstdint>
#include <string_view>

#include "core/yaml_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  namespace budgets = holdfast::budgets;
  auto r = holdfast::yaml_to_json(text, budgets::document(budgets::kStandaloneWrapper));
  (void)r.ok();
  return 0;
}
