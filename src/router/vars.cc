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

namespace {
bool word_or_dot(char c) { return isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'; }
bool space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
std::string_view trim(std::string_view s) {
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}
}  // namespace

std::string resolve_var(std::string_view t, const VarSource& vars, size_t* n_resolved) {
  size_t n = 0;
  std::string out;
  out.reserve(t.size());
  for (size_t i = 0; i < t.size();) {
    if (t[i] != '$' || i + 1 >= t.size() || (i > 0 && t[i - 1] == '\\')) {
      out += t[i++];
      continue;
    }
    std::string_view name;
    size_t end;
    bool braced = false;
    if (t[i + 1] == '{' && t.find('}', i + 2) != std::string_view::npos &&
        t.find('}', i + 2) > i + 2) {
      end = t.find('}', i + 2);
      name = trim(t.substr(i + 2, end - i - 2));
      braced = true;
      ++end;
    } else {
      end = i + 1;
      while (end < t.size() && word_or_dot(t[end])) ++end;
      name = t.substr(i + 1, end - i - 1);
    }
    if (name.empty() && !braced) {
      out += t[i++];
      continue;
    }
    // `a ?? b`: b when a is unset (APISIX splits on \s*\?\?\s*).
    std::string_view fallback;
    bool has_fallback = false;
    if (size_t q = name.find("??"); q != std::string_view::npos) {
      fallback = trim(name.substr(q + 2));
      fallback = fallback.substr(0, fallback.find("??"));
      fallback = trim(fallback);
      name = trim(name.substr(0, q));
      has_fallback = true;
    }
    if (auto v = vars.var(name)) {
      out += *v;
      ++n;
    } else if (has_fallback) {
      out += fallback;
      ++n;
    }
    i = end;
  }
  if (n_resolved) *n_resolved = n;
  return out;
}

}  // namespace holdfast::router
