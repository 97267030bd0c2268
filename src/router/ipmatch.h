// IPv4/IPv6 address and CIDR matching (lua-resty-ipmatcher semantics).
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace holdfast::router {

struct IpAddr {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};
  static std::optional<IpAddr> parse(std::string_view s);
  // Text form (IPv4 dotted, IPv6 as inet_ntop writes it).
  std::string str() const;
};

class IpMatcher {
 public:
  static Result<IpMatcher> compile(const std::vector<std::string>& cidrs);
  static IpMatcher loopback_v4();  // 127.0.0.1/32 alone
  bool match(const IpAddr& a) const;
  bool match(std::string_view addr) const;
  bool empty() const { return nets_.empty(); }

 private:
  struct Net {
    IpAddr addr;
    int bits;
  };
  std::vector<Net> nets_;
};

}  // namespace holdfast::router
