// Helpers shared by plugin implementations (kept small on purpose).
#pragma once
#include <boost/json.hpp>

#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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
// The query string as ngx.req.get_uri_args returns it: decoded; a key
// without '=' is true; a repeated key becomes a list.
json::object query_table(std::string_view query);
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

// The fields of a plugin's configuration (or of one object nested in it)
// as APISIX's schema knows them, so that no field is ignored silently
// (#11 item 9). A field on none of the lists is unknown to APISIX too: its
// schema (no additionalProperties = false) accepts and ignores it, and so
// does Holdfast, with a warning; unless `closed`, where APISIX rejects it.
struct FieldRules {
  // Default member initialisers on every member: GCC 12 warns about any
  // member a designated initialiser leaves out otherwise.
  std::vector<std::string_view> implemented{};
  // APISIX has them, Holdfast does not, and leaving them out changes nothing
  // a client or an upstream sees (e.g. redis settings under the local
  // policy): accepted with a warning naming them.
  std::vector<std::string_view> ignored{};
  // APISIX has them, Holdfast does not, and ignoring them would change who
  // gets in, what is sent upstream or the response: rejected, named.
  std::vector<std::string_view> refused{};
  // Objects (or arrays of objects) inside, with their own rules.
  std::vector<std::pair<std::string_view, const FieldRules*>> nested{};
  bool closed = false;        // APISIX's additionalProperties = false
  size_t min_properties = 0;  // APISIX's minProperties, on what was written
};

// Checks `conf` against `rules` and returns it without the fields Holdfast
// ignores, each named in `warnings` ("unknown field abort.x (ignored, as
// APISIX ignores it)"). The plugin's parser then sees only fields it
// implements: a configuration is applied whole or refused, never in part.
Result<json::object> screen_fields(const json::object& conf, const FieldRules& rules,
                                   std::vector<std::string>& warnings, const std::string& path = {});
// A field name as a message shows it: plain words as they are, anything
// else JSON-quoted (so a control character never reaches a log).
std::string shown_name(std::string_view name);

template <typename T>
Result<std::shared_ptr<const Plugin>> done(Checker& c, std::shared_ptr<T> p) {
  if (c.failed()) return Error{c.error()};
  return std::shared_ptr<const Plugin>(std::move(p));
}

}  // namespace holdfast::plugins
