#include "admin/json_patch.h"

#include <boost/json.hpp>
#include <string>
#include <vector>

namespace holdfast::admin {
namespace json = boost::json;

namespace {
json::value without_nulls(const json::value& v) {
  if (!v.is_object()) return v;
  json::object out;
  merge_patch(out, v.as_object());
  return out;
}
}  // namespace

void merge_patch(json::object& target, const json::object& patch) {
  for (const auto& kv : patch) {
    const json::value& v = kv.value();
    if (v.is_null()) {
      target.erase(kv.key());
      continue;
    }
    auto it = target.find(kv.key());
    if (v.is_object() && it != target.end() && it->value().is_object()) {
      merge_patch(it->value().as_object(), v.as_object());
      continue;
    }
    target[kv.key()] = without_nulls(v);
  }
}

Status patch_sub_path(json::object& root, std::string_view sub_path, const json::value& v) {
  std::vector<std::string> segs;
  std::string_view rest = sub_path;
  while (!rest.empty()) {
    size_t slash = rest.find('/');
    std::string_view seg = rest.substr(0, slash);
    if (!seg.empty()) segs.emplace_back(seg);
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  if (segs.empty()) return Error{"invalid sub-path: /"};
  json::object* cur = &root;
  std::string walked;
  for (size_t i = 0; i + 1 < segs.size(); ++i) {
    walked += "/" + segs[i];
    auto it = cur->find(segs[i]);
    if (it == cur->end()) it = cur->emplace(segs[i], json::object()).first;
    if (!it->value().is_object()) return Error{"invalid sub-path: " + walked};
    cur = &it->value().as_object();
  }
  if (v.is_null()) cur->erase(segs.back());
  else (*cur)[segs.back()] = v;
  return {};
}

}  // namespace holdfast::admin
