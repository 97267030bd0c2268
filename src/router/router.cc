#include "router/router.h"

#include <algorithm>

namespace holdfast::router {

struct Router::Pattern {
  struct Seg {
    enum Kind { literal, param, rest } kind;
    std::string text;  // literal text or parameter name
  };
  std::vector<Seg> segs;

  bool match(std::string_view path, Params* params) const {
    size_t pos = 0;
    Params local;
    for (size_t i = 0; i < segs.size(); ++i) {
      const Seg& s = segs[i];
      if (s.kind == Seg::literal) {
        if (path.compare(pos, s.text.size(), s.text) != 0) return false;
        pos += s.text.size();
      } else if (s.kind == Seg::param) {
        size_t end = path.find('/', pos);
        if (end == std::string_view::npos) end = path.size();
        if (end == pos) return false;
        local.emplace_back(s.text, std::string(path.substr(pos, end - pos)));
        pos = end;
      } else {
        local.emplace_back(s.text, std::string(path.substr(pos)));
        pos = path.size();
      }
    }
    if (pos != path.size()) return false;
    if (params) *params = std::move(local);
    return true;
  }
};

namespace {

constexpr const char* kMethodNames[] = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD",
                                        "OPTIONS", "CONNECT", "TRACE", "PURGE"};

bool has_params(std::string_view uri) {
  for (size_t i = 0; i < uri.size(); ++i)
    if ((uri[i] == ':' || (uri[i] == '*' && i + 1 < uri.size())) && i > 0 && uri[i - 1] == '/') return true;
  return false;
}

// "/a/:id/*rest" -> literal "/a/", param id, literal "/", rest "rest".
std::shared_ptr<const Router::Pattern> compile_pattern(const std::string& uri, std::string& static_prefix) {
  auto p = std::make_shared<Router::Pattern>();
  std::string lit;
  bool prefix_done = false;
  for (size_t i = 0; i < uri.size();) {
    if ((uri[i] == ':' || uri[i] == '*') && i > 0 && uri[i - 1] == '/') {
      if (!prefix_done) { static_prefix = lit; prefix_done = true; }
      if (!lit.empty()) p->segs.push_back({Router::Pattern::Seg::literal, lit});
      lit.clear();
      size_t end = uri.find('/', i);
      if (end == std::string::npos) end = uri.size();
      std::string name = uri.substr(i + 1, end - i - 1);
      if (uri[i] == '*') {
        p->segs.push_back({Router::Pattern::Seg::rest, name.empty() ? std::string(":ext") : name});
        i = uri.size();
        break;
      }
      p->segs.push_back({Router::Pattern::Seg::param, name});
      i = end;
    } else {
      lit += uri[i++];
    }
  }
  if (!lit.empty()) p->segs.push_back({Router::Pattern::Seg::literal, lit});
  if (!prefix_done) static_prefix = uri;
  return p;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  return out;
}

void finish(Router::UriTree& t) {
  for (auto& [k, v] : t.exact)
    std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) {
      if (a.priority != b.priority) return a.priority > b.priority;
      return a.order < b.order;
    });
  t.prefix_lens.clear();
  for (auto& [k, v] : t.prefix) {
    std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) {
      if (a.priority != b.priority) return a.priority > b.priority;
      if (a.path_len != b.path_len) return a.path_len > b.path_len;
      return a.order < b.order;
    });
    t.prefix_lens.push_back(static_cast<uint32_t>(k.size()));
  }
  std::sort(t.prefix_lens.begin(), t.prefix_lens.end(), std::greater<>());
  t.prefix_lens.erase(std::unique(t.prefix_lens.begin(), t.prefix_lens.end()), t.prefix_lens.end());
}

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (tolower(static_cast<unsigned char>(a[i])) != tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

bool host_matches(std::string_view pattern, std::string_view host, std::string_view host_header) {
  if (pattern == "*") return true;
  if (pattern.find(':') != std::string_view::npos) return iequal(pattern, host_header);
  if (pattern.size() > 1 && pattern[0] == '*') {
    std::string_view suffix = pattern.substr(1);  // ".example.com"
    return host.size() > suffix.size() && host.substr(host.size() - suffix.size()) == suffix;
  }
  return pattern == host;
}

}  // namespace

uint32_t method_bit(std::string_view m) {
  for (uint32_t i = 0; i < std::size(kMethodNames); ++i)
    if (m == kMethodNames[i]) return 1u << i;
  return 1u << 31;  // any other method: only routes without a method list match
}

Router::~Router() = default;

Result<Router> Router::build(RouterKind kind, const std::vector<RouteSpec>& routes) {
  Router r;
  r.kind_ = kind;
  uint32_t order = 0;
  for (const auto& spec : routes) {
    Predicates p;
    for (const auto& m : spec.methods) p.methods |= method_bit(m);
    auto ips = IpMatcher::compile(spec.remote_addrs);
    if (!ips) return Error{ips.error()};
    p.remote = std::move(*ips);
    p.vars = spec.vars;
    // Configured hosts are case-insensitive: APISIX lowercases route and
    // service hosts when it loads them (router.lua, http/service.lua) and
    // matches them against $host, which nginx lowercases.
    std::vector<std::string> hosts;
    for (const auto& h : spec.hosts) hosts.push_back(lower(h));
    // Routers without a host tree check hosts per candidate.
    if (kind != RouterKind::radixtree_host_uri) p.hosts = hosts;
    uint32_t pred = static_cast<uint32_t>(r.preds_.size());
    r.preds_.push_back(std::move(p));
    r.indexes_.push_back(spec.index);

    std::vector<UriTree*> trees;
    if (kind == RouterKind::radixtree_host_uri && !hosts.empty()) {
      for (const auto& h : hosts) {
        if (h == "*") {
          if (!r.any_host_) r.any_host_ = std::make_unique<UriTree>();
          trees.push_back(r.any_host_.get());
        } else if (h[0] == '*') {
          trees.push_back(&r.wildcard_hosts_[h.substr(1)]);
        } else {
          trees.push_back(&r.exact_hosts_[h]);
        }
      }
    } else {
      trees.push_back(&r.no_host_);
    }
    for (const auto& uri : spec.uris) {
      Candidate c{pred, spec.priority, static_cast<uint32_t>(uri.size()), order++, nullptr};
      for (UriTree* t : trees) {
        if (kind == RouterKind::radixtree_uri_with_parameter && has_params(uri)) {
          std::string prefix;
          c.pattern = compile_pattern(uri, prefix);
          t->prefix[prefix].push_back(c);
        } else if (!uri.empty() && uri.back() == '*') {
          t->prefix[uri.substr(0, uri.size() - 1)].push_back(c);
        } else if (uri == "*") {
          t->prefix[""].push_back(c);
        } else {
          t->exact[uri].push_back(c);
        }
      }
    }
  }
  finish(r.no_host_);
  if (r.any_host_) finish(*r.any_host_);
  for (auto& [k, t] : r.exact_hosts_) finish(t);
  for (auto& [k, t] : r.wildcard_hosts_) finish(t);
  return r;
}

bool Router::check(const Candidate& c, const MatchInput& in, Params* params, bool check_hosts) const {
  const Predicates& p = preds_[c.pred];
  if (p.methods && !(p.methods & method_bit(in.method))) return false;
  if (!p.remote.empty() && (!in.remote_addr || !p.remote.match(*in.remote_addr))) return false;
  if (check_hosts && !p.hosts.empty()) {
    bool ok = false;
    for (const auto& h : p.hosts)
      if (host_matches(h, in.host, in.host_header)) { ok = true; break; }
    if (!ok) return false;
  }
  if (p.vars && (!in.vars || !p.vars->eval(*in.vars))) return false;
  if (c.pattern && !c.pattern->match(in.path, params)) return false;
  return true;
}

int64_t Router::match_tree(const UriTree& t, const MatchInput& in, Params* params, bool check_hosts) const {
  if (auto it = t.exact.find(in.path); it != t.exact.end()) {
    for (const auto& c : it->second)
      if (check(c, in, params, check_hosts)) return c.pred;
  }
  for (uint32_t len : t.prefix_lens) {
    if (len > in.path.size()) continue;
    auto it = t.prefix.find(in.path.substr(0, len));
    if (it == t.prefix.end()) continue;
    for (const auto& c : it->second)
      if (check(c, in, params, check_hosts)) return c.pred;
  }
  return -1;
}

int64_t Router::match(const MatchInput& in, Params* params) const {
  int64_t pred = -1;
  if (kind_ == RouterKind::radixtree_host_uri) {
    if (!in.host.empty()) {
      if (auto it = exact_hosts_.find(in.host); it != exact_hosts_.end())
        pred = match_tree(it->second, in, params, false);
      // wildcard entries, longest suffix first: a.b.example.com -> .b.example.com, .example.com, .com
      for (size_t dot = in.host.find('.'); pred < 0 && dot != std::string_view::npos;
           dot = in.host.find('.', dot + 1)) {
        if (wildcard_hosts_.empty()) break;
        if (auto it = wildcard_hosts_.find(in.host.substr(dot)); it != wildcard_hosts_.end())
          pred = match_tree(it->second, in, params, false);
      }
    }
    if (pred < 0 && any_host_) pred = match_tree(*any_host_, in, params, false);
    if (pred < 0) pred = match_tree(no_host_, in, params, false);
  } else {
    pred = match_tree(no_host_, in, params, true);
  }
  return pred < 0 ? int64_t{-1} : static_cast<int64_t>(indexes_[pred]);
}

}  // namespace holdfast::router
