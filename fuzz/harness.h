// What the libFuzzer targets share. A broken property aborts, so libFuzzer
// reports it as a crash and keeps the input; the HTTP head parsers share the
// checks every parsed head must pass.
#pragma once
#include <cstdlib>
#include <string_view>

namespace fuzz {

inline void check(bool ok) {
  if (!ok) std::abort();
}

// `v` is empty or points into `buf` (the parsers return views, not copies).
inline bool inside(std::string_view buf, std::string_view v) {
  return v.empty() || (v.data() >= buf.data() && v.data() + v.size() <= buf.data() + buf.size());
}

// A head parsed complete from `buf` ends inside it, its header views point
// into it, and it is never complete before its last byte has arrived (the
// proxy re-parses as bytes come in; an earlier "complete" would split a
// message differently from the peer). `complete(prefix)` parses a prefix.
template <typename Head, typename Complete>
void check_head(std::string_view buf, const Head& head, Complete complete) {
  check(head.head_bytes > 0 && head.head_bytes <= buf.size());
  for (const auto& h : head.headers) check(inside(buf, h.name) && inside(buf, h.value) && !h.name.empty());
  check(!complete(buf.substr(0, head.head_bytes - 1)));
}

}  // namespace fuzz
