#include "proxy/real_ip.h"

namespace holdfast::proxy {

std::optional<router::IpAddr> parse_addr_port(std::string_view s) {
  if (auto a = router::IpAddr::parse(s)) return a;
  std::string_view host, port;
  if (!s.empty() && s[0] == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') return std::nullopt;
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    auto colon = s.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos)
    return std::nullopt;
  int p = 0;
  for (char c : port) p = p * 10 + (c - '0');
  if (p < 1 || p > 65535) return std::nullopt;
  return router::IpAddr::parse(host);
}

namespace {

enum class Step { declined, done, ok };

// ngx_http_get_forwarded_addr_internal: walks one header value from the
// right while the current address is in real_ip_from.
Step walk(const ClientAddrConfig& cfg, std::string_view v, router::IpAddr& addr) {
  bool found = false;
  size_t len = v.size();
  for (;;) {
    if (!cfg.real_ip_from.match(addr)) return found ? Step::done : Step::declined;
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == ',')) --len;
    size_t start = len;
    while (start > 0 && v[start - 1] != ' ' && v[start - 1] != ',') --start;
    auto a = parse_addr_port(v.substr(start, len - start));
    if (!a) return found ? Step::done : Step::declined;
    addr = *a;
    found = true;
    if (!cfg.real_ip_recursive || start == 0) return Step::ok;
    len = start;
  }
}

}  // namespace

std::optional<router::IpAddr> real_client_addr(const ClientAddrConfig& cfg, const http::RequestHead& req,
                                               const router::IpAddr& peer) {
  // The common case costs one comparison per listed network, and nothing
  // when the peer is not among them.
  if (!cfg.real_ip_from.match(peer)) return std::nullopt;
  router::IpAddr addr = peer;
  if (!cfg.real_ip_xff) {
    // Any other header: its first line, as nginx looks it up.
    for (const auto& h : req.headers)
      if (http::iequals(h.name, cfg.real_ip_header))
        return walk(cfg, h.value, addr) == Step::declined ? std::nullopt : std::optional(addr);
    return std::nullopt;
  }
  // X-Forwarded-For: the last line first; with recursion an earlier line is
  // read only when every address of the later one was in real_ip_from.
  Step st = Step::declined;
  bool found = false;
  for (auto it = req.headers.rbegin(); it != req.headers.rend(); ++it) {
    if (!http::iequals(it->name, "x-forwarded-for")) continue;
    st = walk(cfg, it->value, addr);
    if (!cfg.real_ip_recursive) break;
    if (st == Step::declined && found) { st = Step::done; break; }
    if (st != Step::ok) break;
    found = true;
  }
  if (st == Step::declined) return std::nullopt;
  return addr;
}

}  // namespace holdfast::proxy
