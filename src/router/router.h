// The route index: host stage then path stage, with APISIX's order (exact
// path before prefix, longest prefix first, priority within one path).
// Lookups hash the request path and host pieces, so their cost depends on
// the request, not on the number of routes.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/status.h"
#include "router/expr.h"
#include "router/ipmatch.h"

namespace holdfast::router {

// What the manager hands over per route (effective hosts already resolved).
struct RouteSpec {
  uint32_t index = 0;                 // caller's handle, returned on match
  std::vector<std::string> uris;
  std::vector<std::string> hosts;
  std::vector<std::string> methods;
  std::vector<std::string> remote_addrs;
  std::shared_ptr<const Expr> vars;
  int64_t priority = 0;
};

struct MatchInput {
  std::string_view method;
  std::string_view path;        // decoded, no query
  std::string_view host;        // lowercase, without port
  std::string_view host_header; // as sent (for hosts with a port, radixtree_uri)
  const IpAddr* remote_addr = nullptr;
  const VarSource* vars = nullptr;
};

using Params = std::vector<std::pair<std::string, std::string>>;

uint32_t method_bit(std::string_view method);

class Router {
 public:
  struct Pattern;   // a parameterised path (radixtree_uri_with_parameter)
  struct Predicates {
    uint32_t methods = 0;   // 0 = any
    IpMatcher remote;
    std::shared_ptr<const Expr> vars;
    std::vector<std::string> hosts;  // only checked by radixtree_uri
  };
  struct Candidate {
    uint32_t pred;         // index into preds_
    int64_t priority;
    uint32_t path_len;
    uint32_t order;
    std::shared_ptr<const Pattern> pattern;
  };
  struct SvHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Table = std::unordered_map<std::string, std::vector<Candidate>, SvHash, std::equal_to<>>;
  struct UriTree {
    Table exact;
    Table prefix;
    std::vector<uint32_t> prefix_lens;  // distinct, longest first
  };

  Router() = default;
  Router(Router&&) = default;
  Router& operator=(Router&&) = default;
  ~Router();

  static Result<Router> build(RouterKind kind, const std::vector<RouteSpec>& routes);

  // Returns the matched route's `index`, or -1. `params` receives captures.
  int64_t match(const MatchInput& in, Params* params = nullptr) const;
  size_t size() const { return preds_.size(); }

 private:
  int64_t match_tree(const UriTree& t, const MatchInput& in, Params* params, bool check_hosts) const;
  bool check(const Candidate& c, const MatchInput& in, Params* params, bool check_hosts) const;

  RouterKind kind_ = RouterKind::radixtree_host_uri;
  std::vector<Predicates> preds_;
  std::vector<uint32_t> indexes_;   // pred -> caller index
  std::unordered_map<std::string, UriTree, SvHash, std::equal_to<>> exact_hosts_;
  std::unordered_map<std::string, UriTree, SvHash, std::equal_to<>> wildcard_hosts_;  // key ".example.com"
  std::unique_ptr<UriTree> any_host_;   // "*"
  UriTree no_host_;
};

}  // namespace holdfast::router
