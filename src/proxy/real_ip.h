// The client address as nginx's realip module derives it from a request
// header (nginx_config.http.real_ip_*), which APISIX turns on by default.
#pragma once
#include <optional>
#include <string_view>

#include "core/config.h"
#include "http/codec.h"
#include "router/ipmatch.h"

namespace holdfast::proxy {

// The address real_ip_header names when the peer is in real_ip_from;
// nullopt keeps the peer's address (no header, a peer not in real_ip_from,
// or a value that is not an address). As nginx: the last address of the
// value is taken (`a, b` gives b), with an optional port (`1.2.3.4:80`,
// `[::1]:80`); with real_ip_recursive, addresses in real_ip_from are
// skipped from the right, and the last one not in it is the client. For
// X-Forwarded-For every header line takes part, the last line first.
std::optional<router::IpAddr> real_client_addr(const ClientAddrConfig& cfg, const http::RequestHead& req,
                                               const router::IpAddr& peer);

// One element as nginx's ngx_parse_addr_port reads it.
std::optional<router::IpAddr> parse_addr_port(std::string_view s);

}  // namespace holdfast::proxy
