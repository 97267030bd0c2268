// User regexes follow PCRE (APISIX's ngx.re), not RE2: the cases below are
// ones RE2 rejects or answers differently, plus the bounds.
#include "core/user_regex.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

namespace holdfast {
namespace {

std::shared_ptr<const UserRegex> re(std::string_view p, RegexFlags f = {}) {
  auto r = UserRegex::compile(p, f);
  EXPECT_TRUE(r.ok()) << p << ": " << (r.ok() ? "" : r.error());
  return r.ok() ? *r : nullptr;
}

RegexMatch find(std::string_view p, std::string_view s, RegexFlags f = {}) { return re(p, f)->find(s); }

std::string sub(std::string_view p, std::string_view s, std::string_view t, bool global = false) {
  auto tmpl = RegexTemplate::parse(t);
  EXPECT_TRUE(tmpl.ok()) << t;
  std::string out;
  auto n = regex_substitute(*re(p), s, *tmpl, global, out);
  EXPECT_TRUE(n.ok());
  return out;
}

TEST(UserRegex, DollarMatchesBeforeAFinalNewline) {
  // PCRE: `$` matches at the end and before a final "\n" (RE2: only at the end).
  EXPECT_EQ(find("^/a$", "/a\n"), RegexMatch::match);
  EXPECT_EQ(find("^/a$", "/a\nb"), RegexMatch::no_match);
  EXPECT_EQ(find("^/a$", "/a"), RegexMatch::match);
}

TEST(UserRegex, LookaroundsAndBackreferences) {
  EXPECT_EQ(find("^/api/(?!internal)", "/api/public"), RegexMatch::match);
  EXPECT_EQ(find("^/api/(?!internal)", "/api/internal/x"), RegexMatch::no_match);
  EXPECT_EQ(find("(?<=/v)\\d+", "/v2/x"), RegexMatch::match);
  EXPECT_EQ(find("(?<=/v)\\d+", "/x2"), RegexMatch::no_match);
  EXPECT_EQ(find("^/(\\w+)/\\1$", "/ab/ab"), RegexMatch::match);
  EXPECT_EQ(find("^/(\\w+)/\\1$", "/ab/cd"), RegexMatch::no_match);
}

TEST(UserRegex, NamedGroupsAndCaptures) {
  auto r = re("^/(?<kind>[a-z]+)/(\\d+)?(x)?");
  RegexCaptures caps;
  ASSERT_EQ(r->find("/img/42", 0, &caps), RegexMatch::match);
  ASSERT_EQ(caps.size(), 4u);
  EXPECT_EQ(caps[0], "/img/42");
  EXPECT_EQ(caps[1], "img");
  EXPECT_EQ(caps[2], "42");
  EXPECT_EQ(caps[3].data(), nullptr);  // did not take part
  EXPECT_EQ(r->capture_count(), 3);
}

TEST(UserRegex, CaseInsensitiveFlagAndOptions) {
  EXPECT_EQ(find("^abc$", "ABC"), RegexMatch::no_match);
  RegexFlags i;
  i.caseless = true;
  EXPECT_EQ(find("^abc$", "ABC", i), RegexMatch::match);
  auto f = parse_regex_options("ijo");
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(f->caseless);
  auto bad = parse_regex_options("jz");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find("unknown regex option 'z'"), std::string::npos) << bad.error();
}

TEST(UserRegex, CompileErrorsCarryTheReason) {
  auto r = UserRegex::compile("^/(a");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("missing closing parenthesis"), std::string::npos) << r.error();
  EXPECT_NE(r.error().find("offset 4"), std::string::npos) << r.error();
  auto lb = UserRegex::compile("(?<=a+)b");
  ASSERT_FALSE(lb.ok());
  EXPECT_NE(lb.error().find("lookbehind"), std::string::npos) << lb.error();
}

TEST(UserRegex, CatastrophicBacktrackingHitsTheMatchLimit) {
  auto r = re("(a+)+$");
  std::string subject(64, 'a');
  subject += 'b';
  std::string why;
  // 2^64 paths: without the limit this would never return.
  EXPECT_EQ(r->find(subject, 0, nullptr, &why), RegexMatch::error);
  EXPECT_NE(why.find("match limit"), std::string::npos) << why;
  std::string out;
  auto s = regex_substitute(*r, subject, *RegexTemplate::parse("x"), false, out);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().find("match limit"), std::string::npos) << s.error();
  // The same thread matches normally afterwards.
  EXPECT_EQ(r->find("aaa"), RegexMatch::match);
}

TEST(UserRegex, DeepRecursionIsAnErrorNotACrash) {
  // Each iteration of a group with an alternation keeps a backtracking frame:
  // a long subject exhausts the JIT stack (or the depth limit), an error.
  auto r = re("^(a|b)*c$");
  std::string subject(4 * 1024 * 1024, 'a');
  std::string why;
  RegexMatch m = r->find(subject, 0, nullptr, &why);
  EXPECT_NE(m, RegexMatch::match);
  if (m == RegexMatch::error) EXPECT_FALSE(why.empty());
}

TEST(UserRegex, EachThreadHasItsOwnState) {
  auto r = re("^/(\\w+)/(\\d+)$");
  RegexMatch other = RegexMatch::error;
  std::thread t([&] { other = r->find("/a/1"); });
  t.join();
  EXPECT_EQ(other, RegexMatch::match);
  EXPECT_EQ(r->find("/a/x"), RegexMatch::no_match);
}

TEST(RegexTemplate, NgxReSubSyntax) {
  EXPECT_EQ(sub("^/api/(\\w+)/(\\w+)$", "/api/a/b", "/v2/$2/$1"), "/v2/b/a");
  EXPECT_EQ(sub("^/api/(\\w+)", "/api/a", "/${1}x"), "/ax");
  EXPECT_EQ(sub("b+", "abbbc", "[$0]"), "a[bbb]c");
  EXPECT_EQ(sub("b", "abc", "$$1"), "a$1c");
  EXPECT_EQ(sub("(b)", "abc", "$9"), "ac");  // a group the pattern lacks is empty
  EXPECT_EQ(sub("(b)|(z)", "abc", "<$2>"), "a<>c");
  EXPECT_EQ(sub("b", "abcb", "X", true), "aXcX");
  EXPECT_EQ(sub("x*", "ab", "-", true), "-a-b-");
  EXPECT_EQ(sub("^/(\\w+)", "/a/b", "/$1$1"), "/aa/b");  // only the match is replaced
  for (const char* bad : {"/$", "/${1", "/${", "/${}", "/$name", "/${name}", "/$-", "${1a}"}) {
    auto t = RegexTemplate::parse(bad);
    EXPECT_FALSE(t.ok()) << bad;
    if (!t.ok()) EXPECT_NE(t.error().find("invalid replacement template"), std::string::npos);
  }
  EXPECT_EQ(RegexTemplate::parse("/$12/${3}")->max_group(), 12);
  EXPECT_EQ(RegexTemplate::parse("/plain")->max_group(), -1);
}

}  // namespace
}  // namespace holdfast
