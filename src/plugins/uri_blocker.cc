// uri-blocker (priority 2900): rejects requests whose URI matches one of the
// `block_rules` regexes (PCRE2, core/user_regex.h), in the rewrite phase.
// As APISIX it searches $request_uri as APISIX defines it: the normalised
// path ($uri) and the query (`/./internal/x?a=1` is `/internal/x?a=1`), so
// dot segments or `//` cannot hide a blocked path.
#include <fmt/format.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>

#include "core/log.h"
#include "plugins/common.h"

namespace holdfast::plugins {
namespace {

class UriBlocker final : public Plugin {
 public:
  std::shared_ptr<const UserRegex> rules;  // every rule joined with '|', as APISIX concatenates them
  int rejected_code = 403;
  std::string rejected_msg;

  Action rewrite(RequestCtx& ctx) const override {
    thread_local std::string subject;
    subject.assign(ctx.uri);
    if (ctx.req && !ctx.req->query.empty()) subject.append("?").append(ctx.req->query);
    std::string why;
    const RegexMatch m = rules->find(subject, 0, nullptr, &why);
    if (m == RegexMatch::no_match) return Action::next;
    if (m == RegexMatch::error) {
      // APISIX lets the request through when ngx.re.find fails; Holdfast
      // blocks it, so that an input made to exhaust the match limit cannot
      // pass a block rule. Logged at most once a second.
      static std::atomic<int64_t> last{0};
      const int64_t now =
          std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
      if (last.exchange(now) != now) log::error("uri-blocker: block_rules '{}' failed: {}", rules->pattern(), why);
    }
    if (rejected_msg.empty())
      ctx.respond(rejected_code, "", "");
    else
      ctx.respond(rejected_code, json_error_msg(rejected_msg));
    return Action::respond;
  }
};

// APISIX's schema leaves other fields open: they are warned about and ignored.
const FieldRules kFields{.implemented = {"block_rules", "rejected_code", "rejected_msg", "case_insensitive"}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<UriBlocker>();
  Checker c(conf, "uri-blocker");
  c.only(kFields.implemented);
  const json::array* arr = c.array("block_rules");
  std::vector<std::string> block_rules;
  if (arr) {
    for (size_t i = 0; i < arr->size() && !c.failed(); ++i) {
      const json::value& v = (*arr)[i];
      const std::string where =
          fmt::format("property \"block_rules\" validation failed: failed to validate item {}: ", i + 1);
      if (!v.is_string()) {
        c.fail(where + "wrong type: expected string, got " + model::type_name(v));
      } else if (v.as_string().empty()) {
        c.fail(where + "string too short, expected at least 1, got 0");
      } else if (v.as_string().size() > 4096) {
        c.fail(where + fmt::format("string too long, expected at most 4096, got {}", v.as_string().size()));
      } else {
        std::string s(v.as_string());
        for (const auto& have : block_rules)
          if (have == s && !c.failed())
            c.fail(fmt::format("property \"block_rules\" validation failed: expected unique items but items {} are equal", s));
        block_rules.push_back(std::move(s));
      }
    }
  }
  p->rejected_code = static_cast<int>(c.integer("rejected_code", false, 200, 999).value_or(403));
  p->rejected_msg = c.str("rejected_msg", false, 1).value_or("");
  RegexFlags flags;
  flags.caseless = c.boolean("case_insensitive").value_or(false);
  if (!c.failed() && !arr) c.fail("property \"block_rules\" is required");
  // Each rule must compile on its own (APISIX's check_schema), with its
  // reason; then they are searched as one alternation.
  std::string joined;
  for (const auto& r : block_rules) {
    if (c.failed()) break;
    if (auto re = UserRegex::compile(r, flags); !re)
      c.fail(fmt::format("pcre_compile() failed: {} in \"{}\"", re.error(), r));
    joined += (joined.empty() ? "" : "|") + r;
  }
  if (!c.failed()) {
    // An empty list joins to "", which matches every URI: APISIX's schema
    // allows it, and it then blocks everything; so does Holdfast.
    auto re = UserRegex::compile(joined, flags);
    if (!re) c.fail(fmt::format("pcre_compile() failed: {} in \"{}\"", re.error(), joined));
    else p->rules = *re;
  }
  return done(c, p);
}

}  // namespace

extern const PluginDef kUriBlocker{"uri-blocker", 2900, false, &create, nullptr, nullptr, &kFields};

}  // namespace holdfast::plugins
