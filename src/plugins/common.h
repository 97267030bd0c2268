// Helpers shared by plugin implementations (kept small on purpose).
#pragma once
#include <boost/json.hpp>

#include <memory>
#include <random>
#include <string>

#include "core/user_regex.h"
#include "model/json_check.h"
#include "plugins/plugin.h"

namespace holdfast::plugins {

namespace json = boost::json;
using model::Checker;

// Per-thread PRNG for sampling and ids; never shared between workers.
std::mt19937_64& rng();
// True with probability percentage/100 (absent percentage = always).
bool sample(std::optional<int64_t> percentage);
std::string uuid_v4();
std::string json_message(std::string_view msg);   // {"message":"..."}\n
std::string json_error_msg(std::string_view msg); // {"error_msg":"..."}\n
// A JSON number as Lua's tostring prints it ("%.14g": 5 -> "5", 5.5 ->
// "5.5"), which is what APISIX puts in a header or body built from one.
std::string lua_number(const json::value& number);

// {add,set,remove} or a legacy map (= set). Values may contain $vars.
// With `multi_values` (proxy-rewrite), add/set values may be arrays: each
// element becomes one entry, so consecutive entries share a name.
struct HeaderOps {
  HeaderList add, set;
  std::vector<std::string> remove;
};
Result<HeaderOps> parse_header_ops(const json::value& v, bool multi_values = false);

// `[regex, template, regex, template, ...]` (proxy-rewrite and redirect
// regex_uri), compiled once (core/user_regex.h: PCRE2 and ngx.re.sub
// templates); failures, with the reason, go to the checker under `key`.
using RegexPairs = std::vector<std::pair<std::shared_ptr<const UserRegex>, RegexTemplate>>;
RegexPairs parse_regex_pairs(Checker& c, const char* key);
// The first pair whose regex matches `uri` rewrites it (ngx.re.sub: only the
// matched part is replaced) into `out`: true if one matched, an error (the
// match limit) with APISIX's message otherwise.
Result<bool> apply_regex_pairs(const RegexPairs& pairs, std::string_view uri, std::string& out);

template <typename T>
Result<std::shared_ptr<const Plugin>> done(Checker& c, std::shared_ptr<T> p) {
  if (c.failed()) return Error{c.error()};
  return std::shared_ptr<const Plugin>(std::move(p));
}

}  // namespace holdfast::plugins
