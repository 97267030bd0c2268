#include "router/ipmatch.h"

#include <arpa/inet.h>

#include <cstring>

namespace holdfast::router {

std::optional<IpAddr> IpAddr::parse(std::string_view s) {
  char buf[64];
  if (s.size() >= sizeof buf) return std::nullopt;
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = 0;
  IpAddr a;
  if (inet_pton(AF_INET, buf, a.bytes.data()) == 1) return a;
  if (inet_pton(AF_INET6, buf, a.bytes.data()) == 1) {
    a.v6 = true;
    // IPv4-mapped IPv6 (::ffff:a.b.c.d) matches IPv4 rules.
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(a.bytes.data(), mapped, 12) == 0) {
      IpAddr v4;
      std::memcpy(v4.bytes.data(), a.bytes.data() + 12, 4);
      return v4;
    }
    return a;
  }
  return std::nullopt;
}

std::string IpAddr::str() const {
  char buf[INET6_ADDRSTRLEN];
  if (!inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buf, sizeof buf)) return {};
  return buf;
}

IpMatcher IpMatcher::loopback_v4() {
  IpMatcher m;
  IpAddr a;
  a.bytes[0] = 127;
  a.bytes[3] = 1;
  m.nets_.push_back({a, 32});
  return m;
}

Result<IpMatcher> IpMatcher::compile(const std::vector<std::string>& cidrs) {
  IpMatcher m;
  for (const auto& c : cidrs) {
    std::string_view s = c;
    int bits = -1;
    if (auto slash = s.find('/'); slash != std::string_view::npos) {
      std::string b(s.substr(slash + 1));
      if (b.empty() || b.find_first_not_of("0123456789") != std::string::npos || b.size() > 3)
        return Error{"invalid CIDR " + c};
      bits = std::stoi(b);
      s = s.substr(0, slash);
    }
    auto a = IpAddr::parse(s);
    if (!a) return Error{"invalid IP address " + c};
    int max = a->v6 ? 128 : 32;
    if (bits < 0) bits = max;
    if (bits > max) return Error{"invalid CIDR " + c};
    m.nets_.push_back({*a, bits});
  }
  return m;
}

bool IpMatcher::match(const IpAddr& a) const {
  for (const auto& n : nets_) {
    if (n.addr.v6 != a.v6) continue;
    int full = n.bits / 8, rest = n.bits % 8;
    if (std::memcmp(n.addr.bytes.data(), a.bytes.data(), full) != 0) continue;
    if (rest) {
      uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
      if ((n.addr.bytes[full] & mask) != (a.bytes[full] & mask)) continue;
    }
    return true;
  }
  return false;
}

bool IpMatcher::match(std::string_view addr) const {
  auto a = IpAddr::parse(addr);
  return a && match(*a);
}

}  // namespace holdfast::router
