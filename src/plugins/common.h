// Helpers shared by plugin implementations (kept small on purpose).
#pragma once
#include <boost/json.hpp>
#include <re2/re2.h>

#include <memory>
#include <random>
#include <string>

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

// {add,set,remove} or a legacy map (= set). Values may contain $vars.
struct HeaderOps {
  HeaderList add, set;
  std::vector<std::string> remove;
};
Result<HeaderOps> parse_header_ops(const json::value& v);

// `[regex, template, regex, template, ...]` (proxy-rewrite and redirect
// regex_uri), compiled once; failures go to the checker under `key`.
using RegexPairs = std::vector<std::pair<std::shared_ptr<re2::RE2>, std::string>>;
RegexPairs parse_regex_pairs(Checker& c, const char* key);
// APISIX/ngx.re templates use $1; RE2 rewrite strings use \1.
std::string re2_rewrite(std::string_view apisix_template);

template <typename T>
Result<std::shared_ptr<const Plugin>> done(Checker& c, std::shared_ptr<T> p) {
  if (c.failed()) return Error{c.error()};
  return std::shared_ptr<const Plugin>(std::move(p));
}

}  // namespace holdfast::plugins
