// A JSON Web Token split and decoded (RFC 7519 compact JWS), as
// lua-resty-jwt's load_jwt reads one for APISIX's jwt-auth: three
// base64url parts, the first two JSON objects. Nothing is verified here.
#pragma once
#include <boost/json/object.hpp>

#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/status.h"

namespace holdfast::plugins {

struct JwtToken {
  boost::json::object header, payload;
  std::string alg;                  // header.alg when it is a string
  std::string_view signing_input;   // "<header>.<payload>", a view into the token
  std::string_view signature;       // the third part, still base64url
};

// Tokens longer than this are refused before any decoding.
inline constexpr size_t kMaxJwtBytes = 64 * 1024;

// The reason on failure names the part that is wrong, never its content.
Result<JwtToken> parse_jwt(std::string_view token);

// Tokens whose signature verified, so that a verify (an RSA-2048
// one costs more than a whole proxied request) runs once per token rather
// than once per request. One per worker thread: no lock. Keyed by the whole
// token and by the credential that verified it, held weakly: once a reload
// replaces the consumer's key, the old entries never match again (the weak
// reference keeps the old key's control block, so no new key can take its
// identity). Only successes are kept, so a client sending garbage cannot
// fill it. Claims (exp, nbf) are still checked on every request; an entry
// itself lapses at the token's `exp` (plus the grace period). Bounded by
// entries and bytes; the oldest entry leaves first.
class VerifiedTokens {
 public:
  VerifiedTokens(size_t max_entries, size_t max_bytes) : max_entries_(max_entries), max_bytes_(max_bytes) {}
  // `token` verified with `key` before, and has not lapsed at `now`.
  // Compared by owner, so no reference count (shared by workers) is touched.
  template <class K>
  bool contains(std::string_view token, const std::shared_ptr<K>& key, double now) const {
    const Entry* e = find(token);
    return e && !e->key.owner_before(key) && !key.owner_before(e->key) && !e->key.expired() &&
           now < e->expires;
  }
  // Records a verified token, good until `expires` (infinity: no expiry of its own).
  void insert(std::string_view token, const std::shared_ptr<const void>& key, double expires);
  size_t size() const { return map_.size(); }
  size_t bytes() const { return bytes_; }

 private:
  struct Entry {
    std::weak_ptr<const void> key;
    double expires;
  };
  const Entry* find(std::string_view token) const;
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  size_t max_entries_, max_bytes_, bytes_ = 0;
  std::unordered_map<std::string, Entry, Hash, std::equal_to<>> map_;
  std::deque<std::string_view> order_;  // the map's keys, oldest first (node keys do not move)
};

// The cache each worker keeps: 32,768 tokens or 16 MiB, whichever is reached first.
inline constexpr size_t kVerifiedTokensMax = 32768;
inline constexpr size_t kVerifiedTokensBytes = 16 << 20;

}  // namespace holdfast::plugins
