#include "plugins/jwt_token.h"

#include <boost/json/parse.hpp>

#include "core/base64.h"

namespace holdfast::plugins {
namespace {

// lua-resty-jwt's jwt_decode: base64url, then a JSON object.
bool decode_part(std::string_view part, boost::json::object& out) {
  auto raw = ngx_decode_base64url(part);
  if (!raw) return false;
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(*raw, ec);
  if (ec || !v.is_object()) return false;
  out = std::move(v.as_object());
  return true;
}

}  // namespace

Result<JwtToken> parse_jwt(std::string_view token) {
  if (token.size() > kMaxJwtBytes) return Error{"invalid jwt string"};
  const size_t d1 = token.find('.');
  const size_t d2 = d1 == std::string_view::npos ? d1 : token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos)
    return Error{"invalid jwt string"};
  JwtToken t;
  if (!decode_part(token.substr(0, d1), t.header)) return Error{"invalid header"};
  if (!decode_part(token.substr(d1 + 1, d2 - d1 - 1), t.payload)) return Error{"invalid payload"};
  if (const auto* a = t.header.if_contains("alg"); a && a->is_string()) t.alg = std::string(a->as_string());
  t.signing_input = token.substr(0, d2);
  t.signature = token.substr(d2 + 1);
  return t;
}

const VerifiedTokens::Entry* VerifiedTokens::find(std::string_view token) const {
  auto it = map_.find(token);
  return it == map_.end() ? nullptr : &it->second;
}

void VerifiedTokens::insert(std::string_view token, const std::shared_ptr<const void>& key, double expires) {
  if (max_entries_ == 0 || token.size() > max_bytes_) return;
  if (auto it = map_.find(token); it != map_.end()) {
    it->second = Entry{key, expires};  // re-verified under a new key: keep its place
    return;
  }
  while (!order_.empty() && (map_.size() >= max_entries_ || bytes_ + token.size() > max_bytes_)) {
    bytes_ -= order_.front().size();
    map_.erase(map_.find(order_.front()));
    order_.pop_front();
  }
  auto [it, added] = map_.emplace(std::string(token), Entry{key, expires});
  order_.push_back(it->first);
  bytes_ += token.size();
}

}  // namespace holdfast::plugins
