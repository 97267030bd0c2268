// Regular expressions written by users (route vars `~~`/`~*`, regex_uri,
// response-rewrite filters, cors origins, skip_mtls_uri_regex): PCRE2 with
// JIT, as APISIX's ngx.re, with a match limit so that no pattern or input can
// stall a worker. pcre2.h stays out of this header.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace holdfast {

// ngx.re's option letters that change matching (APISIX passes "jo"; j and o
// are JIT and compile-once, always on here).
struct RegexFlags {
  bool caseless = false;   // i
  bool multiline = false;  // m
  bool dotall = false;     // s
  bool extended = false;   // x
  bool anchored = false;   // a
  bool utf = false;        // u, U (invalid UTF-8 in a subject never matches)
  bool dupnames = false;   // D
};
// Parses an ngx.re options string ("jo", "ijo", ...); unknown letters are an
// error, as ngx.re raises one.
Result<RegexFlags> parse_regex_options(std::string_view opts);

// Bounds on one match (README "User regular expressions"): PCRE2's default
// match limit, the one OpenResty uses (lua_regex_match_limit 0), and a JIT
// stack of at most this many bytes per worker thread.
inline constexpr uint32_t kRegexMatchLimit = 10'000'000;
inline constexpr uint32_t kRegexDepthLimit = 10'000;
inline constexpr size_t kRegexJitStackMax = 1024 * 1024;

// Capture groups of the last match: views into the subject, group 0 is the
// whole match; a group that did not take part is a view with a null data().
using RegexCaptures = std::vector<std::string_view>;

enum class RegexMatch { no_match, match, error };

class UserRegex {
 public:
  static Result<std::shared_ptr<const UserRegex>> compile(std::string_view pattern, RegexFlags flags = {});
  ~UserRegex();
  UserRegex(const UserRegex&) = delete;
  UserRegex& operator=(const UserRegex&) = delete;

  // Searches `subject` from `start`. On `error` (match limit, JIT stack
  // exhausted) `*why` says which, and the caller answers as APISIX does for a
  // regex error (500, or false in vars).
  RegexMatch find(std::string_view subject, size_t start = 0, RegexCaptures* caps = nullptr,
                  std::string* why = nullptr) const;

  const std::string& pattern() const { return pattern_; }
  int capture_count() const { return captures_; }

  struct Code;  // opaque: the compiled pcre2 code

 private:
  UserRegex() = default;
  std::string pattern_;
  int captures_ = 0;
  std::unique_ptr<Code> code_;
};

// A replacement template as ngx.re.sub takes it: `$0`..`$N` and `${N}` name
// capture groups (a missing group is empty), `$$` is a literal `$`; any other
// `$` (a named variable, `$` at the end, an unclosed `${`) is an error, as in
// ngx.re.sub.
class RegexTemplate {
 public:
  static Result<RegexTemplate> parse(std::string_view tmpl);
  void expand(std::string& out, const RegexCaptures& caps) const;
  // The highest group number the template refers to (-1 for none).
  int max_group() const { return max_group_; }

 private:
  struct Part {
    std::string literal;
    int group = -1;  // >= 0: a capture group instead of the literal
  };
  std::vector<Part> parts_;
  int max_group_ = -1;
};

// ngx.re.sub (once) / ngx.re.gsub (global): replaces the first or every match
// of `re` in `subject` with `tmpl` into `out`. Returns the number of matches
// replaced, or an error (match limit) with the reason.
Result<size_t> regex_substitute(const UserRegex& re, std::string_view subject, const RegexTemplate& tmpl,
                                bool global, std::string& out);

}  // namespace holdfast
