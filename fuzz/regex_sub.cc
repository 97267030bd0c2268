// libFuzzer target: user regexes (core/user_regex.h) and the ngx.re.sub
// replacement template parser. The input is pattern NUL template NUL
// subject; whatever compiles is substituted once and globally. Properties: the
// substitution always ends (the match limit and the empty-match step bound
// it), captures point into the subject, and a template without `$` expands to
// itself.
#include <cstdint>
#include <string>
#include <string_view>

#include "core/user_regex.h"
#include "harness.h"

using fuzz::check;
using fuzz::inside;
using holdfast::RegexCaptures;
using holdfast::RegexMatch;
using holdfast::RegexTemplate;
using holdfast::UserRegex;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t a = in.find('\0');
  if (a == std::string_view::npos) return 0;
  size_t b = in.find('\0', a + 1);
  if (b == std::string_view::npos) return 0;
  std::string_view pattern = in.substr(0, a), tmpl = in.substr(a + 1, b - a - 1), subject = in.substr(b + 1);

  auto t = RegexTemplate::parse(tmpl);
  if (t && tmpl.find('$') == std::string_view::npos) {
    std::string out;
    t->expand(out, {});
    check(out == tmpl);
  }
  holdfast::RegexFlags flags;
  flags.caseless = !pattern.empty() && (pattern[0] & 1);
  auto re = UserRegex::compile(pattern, flags);
  if (!re) return 0;
  RegexCaptures caps;
  std::string why;
  RegexMatch m = (*re)->find(subject, 0, &caps, &why);
  if (m == RegexMatch::match) {
    check(caps.size() == static_cast<size_t>((*re)->capture_count()) + 1);
    for (auto c : caps) check(c.data() == nullptr || inside(subject, c));
  }
  if (m == RegexMatch::error) check(!why.empty());
  if (!t) return 0;
  for (bool global : {false, true}) {
    std::string out;
    auto n = holdfast::regex_substitute(**re, subject, *t, global, out);
    if (n && *n == 0) check(out == subject);
  }
  return 0;
}
