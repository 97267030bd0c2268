#include "core/user_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

namespace holdfast {

struct UserRegex::Code {
  pcre2_code* code = nullptr;
  ~Code() { pcre2_code_free(code); }
};

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  int n = pcre2_get_error_message(code, buf, sizeof(buf));
  if (n < 0) return fmt::format("pcre2 error {}", code);
  return std::string(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

// Per worker thread: the JIT stack, the match context carrying the limits
// and a match data block reused across matches, so matching allocates only
// when a pattern has more groups than any before it on this thread.
class ThreadState {
 public:
  ThreadState() {
    ctx_ = pcre2_match_context_create(nullptr);
    if (!ctx_) return;
    pcre2_set_match_limit(ctx_, kRegexMatchLimit);
    // Only the interpreter (a pattern the JIT could not compile) reads the
    // depth limit; the JIT's recursion is bounded by its stack below.
    pcre2_set_depth_limit(ctx_, kRegexDepthLimit);
    stack_ = pcre2_jit_stack_create(32 * 1024, kRegexJitStackMax, nullptr);
    if (stack_) pcre2_jit_stack_assign(ctx_, nullptr, stack_);
  }
  ~ThreadState() {
    pcre2_match_data_free(data_);
    pcre2_jit_stack_free(stack_);
    pcre2_match_context_free(ctx_);
  }
  ThreadState(const ThreadState&) = delete;
  ThreadState& operator=(const ThreadState&) = delete;

  pcre2_match_context* ctx() const { return ctx_; }
  pcre2_match_data* data(uint32_t pairs) {
    if (!data_ || pairs_ < pairs) {
      pcre2_match_data_free(data_);
      data_ = pcre2_match_data_create(pairs, nullptr);
      pairs_ = data_ ? pairs : 0;
    }
    return data_;
  }

 private:
  pcre2_match_context* ctx_ = nullptr;
  pcre2_jit_stack* stack_ = nullptr;
  pcre2_match_data* data_ = nullptr;
  uint32_t pairs_ = 0;
};

ThreadState& thread_state() {
  thread_local ThreadState s;
  return s;
}

RegexMatch run(const pcre2_code* code, int captures, std::string_view subject, size_t start, RegexCaptures* caps,
               std::string* why) {
  ThreadState& ts = thread_state();
  pcre2_match_data* md = ts.data(static_cast<uint32_t>(captures) + 1);
  if (!md || !ts.ctx()) {
    if (why) *why = "out of memory";
    return RegexMatch::error;
  }
  // PCRE2 10.42 refuses a null subject even when empty.
  if (!subject.data()) subject = std::string_view("", 0);
  int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), start, 0, md,
                       ts.ctx());
  if (rc == PCRE2_ERROR_NOMATCH) return RegexMatch::no_match;
  if (rc < 0) {
    if (why) *why = pcre2_message(rc);
    return RegexMatch::error;
  }
  if (caps) {
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    caps->assign(static_cast<size_t>(captures) + 1, std::string_view());
    for (int i = 0; i <= captures && i < rc; ++i) {
      PCRE2_SIZE b = ov[2 * i], e = ov[2 * i + 1];
      if (b == PCRE2_UNSET) continue;
      // \K can leave the start after the end; such a group is empty.
      (*caps)[i] = subject.substr(b, e > b ? e - b : 0);
    }
  }
  return RegexMatch::match;
}

}  // namespace

Result<RegexFlags> parse_regex_options(std::string_view opts) {
  RegexFlags f;
  for (char c : opts) {
    switch (c) {
      case 'j': case 'o': break;  // JIT and compile-once: always
      case 'i': f.caseless = true; break;
      case 'm': f.multiline = true; break;
      case 's': f.dotall = true; break;
      case 'x': f.extended = true; break;
      case 'a': f.anchored = true; break;
      case 'u': case 'U': f.utf = true; break;
      case 'D': f.dupnames = true; break;
      default:
        return Error{fmt::format("unknown regex option '{}'", (c >= 0x20 && c < 0x7f) ? std::string(1, c) : "?")};
    }
  }
  return f;
}

UserRegex::~UserRegex() = default;

Result<std::shared_ptr<const UserRegex>> UserRegex::compile(std::string_view pattern, RegexFlags flags) {
  uint32_t opts = 0;
  if (flags.caseless) opts |= PCRE2_CASELESS;
  if (flags.multiline) opts |= PCRE2_MULTILINE;
  if (flags.dotall) opts |= PCRE2_DOTALL;
  if (flags.extended) opts |= PCRE2_EXTENDED;
  if (flags.anchored) opts |= PCRE2_ANCHORED;
  // Invalid UTF-8 in a subject then simply fails to match, never undefined.
  if (flags.utf) opts |= PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
  if (flags.dupnames) opts |= PCRE2_DUPNAMES;
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), opts, &err, &off, nullptr);
  if (!code) return Error{fmt::format("{} at offset {}", pcre2_message(err), off)};
  std::shared_ptr<UserRegex> re(new UserRegex());
  re->code_ = std::make_unique<Code>();
  re->code_->code = code;
  re->pattern_ = std::string(pattern);
  uint32_t n = 0;
  pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &n);
  re->captures_ = static_cast<int>(n);
  // Without JIT (no executable memory, or a pattern the JIT refuses)
  // pcre2_match interprets, under the same match and depth limits.
  (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  return std::shared_ptr<const UserRegex>(std::move(re));
}

RegexMatch UserRegex::find(std::string_view subject, size_t start, RegexCaptures* caps, std::string* why) const {
  if (start > subject.size()) return RegexMatch::no_match;
  return run(code_->code, captures_, subject, start, caps, why);
}

Result<RegexTemplate> RegexTemplate::parse(std::string_view t) {
  RegexTemplate out;
  std::string lit;
  auto flush = [&] {
    if (!lit.empty()) out.parts_.push_back(Part{std::move(lit), -1});
    lit.clear();
  };
  auto invalid = [&](std::string_view why) {
    return Error{fmt::format("invalid replacement template: {}", why)};
  };
  // Group numbers beyond PCRE2's 65535 groups can never be set; capping
  // keeps the arithmetic bounded for any length of digits.
  constexpr int kMaxGroup = 65536;
  for (size_t i = 0; i < t.size();) {
    if (t[i] != '$') {
      lit += t[i++];
      continue;
    }
    ++i;
    if (i == t.size()) return invalid("'$' at the end");
    if (t[i] == '$') {
      lit += '$';
      ++i;
      continue;
    }
    bool brace = t[i] == '{';
    if (brace && ++i == t.size()) return invalid("'${' at the end");
    if (t[i] < '0' || t[i] > '9') {
      if (brace && t[i] == '}') return invalid("empty '${}'");
      if (isalnum(static_cast<unsigned char>(t[i])) || t[i] == '_')
        return invalid("named variables are not supported (only $0..$N and ${N})");
      return invalid("'$' not followed by a group number");
    }
    int n = 0;
    while (i < t.size() && t[i] >= '0' && t[i] <= '9') {
      n = std::min(kMaxGroup, n * 10 + (t[i] - '0'));
      ++i;
    }
    if (brace) {
      if (i == t.size() || t[i] != '}') return invalid("missing '}' after '${'");
      ++i;
    }
    flush();
    out.parts_.push_back(Part{std::string(), n});
    out.max_group_ = std::max(out.max_group_, n);
  }
  flush();
  return out;
}

void RegexTemplate::expand(std::string& out, const RegexCaptures& caps) const {
  for (const Part& p : parts_) {
    if (p.group < 0) out += p.literal;
    else if (static_cast<size_t>(p.group) < caps.size()) out += caps[p.group];
  }
}

Result<size_t> regex_substitute(const UserRegex& re, std::string_view subject, const RegexTemplate& tmpl,
                                bool global, std::string& out) {
  out.clear();
  static constexpr char kEmpty[] = "";
  if (!subject.data()) subject = std::string_view(kEmpty, 0);  // offsets below are taken from it
  RegexCaptures caps;
  std::string why;
  size_t pos = 0;     // where the next search starts
  size_t copied = 0;  // subject[0, copied) is already in out
  size_t n = 0;
  while (pos <= subject.size()) {
    RegexMatch m = re.find(subject, pos, &caps, &why);
    if (m == RegexMatch::error) return Error{why};
    if (m == RegexMatch::no_match) break;
    size_t b = static_cast<size_t>(caps[0].data() - subject.data());
    size_t e = b + caps[0].size();
    out.append(subject.substr(copied, b - copied));
    tmpl.expand(out, caps);
    copied = e;
    ++n;
    if (!global) break;
    if (e == b) {
      // An empty match: the next search starts one byte on (the byte itself
      // is copied as is), as ngx.re.gsub does, so the loop always advances.
      if (e == subject.size()) break;
      out += subject[e];
      copied = e + 1;
      pos = e + 1;
    } else {
      pos = e;
    }
  }
  out.append(subject.substr(copied));
  return n;
}

}  // namespace holdfast
