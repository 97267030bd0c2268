#include "router/vars.h"

namespace holdfast::router {

std::string expand_vars(std::string_view t, const VarSource& vars) {
  std::string out;
  out.reserve(t.size());
  for (size_t i = 0; i < t.size();) {
    if (t[i] != '$' || i + 1 >= t.size()) { out += t[i++]; continue; }
    size_t start = i + 1, end;
    std::string_view name;
    if (t[start] == '{') {
      end = t.find('}', start);
      if (end == std::string_view::npos) { out += t.substr(i); break; }
      name = t.substr(start + 1, end - start - 1);
      ++end;
    } else {
      end = start;
      while (end < t.size() && (isalnum(static_cast<unsigned char>(t[end])) || t[end] == '_')) ++end;
      name = t.substr(start, end - start);
      if (name.empty()) { out += t[i++]; continue; }
    }
    if (auto v = vars.var(name)) out += *v;
    i = end;
  }
  return out;
}

}  // namespace holdfast::router
