// nginx's realip semantics (proxy/real_ip.h) and the config keys that set
// them up (nginx_config.http.real_ip_*, apisix.trusted_addresses).
#include "proxy/real_ip.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/config.h"
#include "plugins/plugin.h"

using namespace holdfast;

namespace {

ClientAddrConfig conf(const char* yaml) {
  auto c = parse_node_config(yaml, ".");
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error());
  return c.ok() ? c->client_addr : ClientAddrConfig{};
}

// The client address for a peer and header lines; "" = the peer's.
std::string client(const ClientAddrConfig& c, const char* peer, std::vector<http::Header> headers) {
  http::RequestHead req;
  req.headers = std::move(headers);
  auto p = router::IpAddr::parse(peer);
  EXPECT_TRUE(p);
  auto a = proxy::real_client_addr(c, req, *p);
  return a ? a->str() : std::string();
}

}  // namespace

TEST(RealIp, DefaultsAreApisixs) {
  ClientAddrConfig c = conf("");
  EXPECT_EQ(c.real_ip_header, "x-real-ip");
  EXPECT_FALSE(c.real_ip_recursive);
  EXPECT_FALSE(c.trusted_addresses);
  // 127.0.0.1 may name the client; nobody else may.
  EXPECT_EQ(client(c, "127.0.0.1", {{"X-Real-IP", "10.1.2.3"}}), "10.1.2.3");
  EXPECT_EQ(client(c, "127.0.0.2", {{"X-Real-IP", "10.1.2.3"}}), "");
  EXPECT_EQ(client(c, "::1", {{"X-Real-IP", "10.1.2.3"}}), "");
  EXPECT_EQ(client(c, "127.0.0.1", {}), "");
  EXPECT_EQ(client(c, "127.0.0.1", {{"X-Forwarded-For", "10.1.2.3"}}), "");
}

TEST(RealIp, ValueForms) {
  ClientAddrConfig c = conf("");
  EXPECT_EQ(client(c, "127.0.0.1", {{"x-real-ip", "10.0.0.1:8080"}}), "10.0.0.1");
  EXPECT_EQ(client(c, "127.0.0.1", {{"X-Real-IP", "2001:db8::1"}}), "2001:db8::1");
  EXPECT_EQ(client(c, "127.0.0.1", {{"X-Real-IP", "[2001:db8::1]:443"}}), "2001:db8::1");
  // the last element of a list, as nginx reads any realip header
  EXPECT_EQ(client(c, "127.0.0.1", {{"X-Real-IP", "10.0.0.1, 10.0.0.2"}}), "10.0.0.2");
  // the first X-Real-IP line
  EXPECT_EQ(client(c, "127.0.0.1", {{"X-Real-IP", "10.0.0.1"}, {"X-Real-IP", "10.0.0.2"}}), "10.0.0.1");
  // not an address: the peer's stays
  for (const char* bad : {"", "nope", "10.0.0.256", "[2001:db8::1]", "10.0.0.1:0", "10.0.0.1:65536", "10.0.0.1:x"})
    EXPECT_EQ(client(c, "127.0.0.1", {{"X-Real-IP", bad}}), "") << bad;
}

TEST(RealIp, XForwardedForNonRecursiveTakesTheLast) {
  ClientAddrConfig c = conf("nginx_config: {http: {real_ip_header: X-Forwarded-For, real_ip_from: [127.0.0.1, 10.0.0.0/8]}}");
  EXPECT_TRUE(c.real_ip_xff);
  EXPECT_EQ(client(c, "127.0.0.1", {{"X-Forwarded-For", "1.1.1.1, 10.0.0.5"}}), "10.0.0.5");
  // several lines: the last one
  EXPECT_EQ(client(c, "127.0.0.1", {{"X-Forwarded-For", "1.1.1.1"}, {"X-Forwarded-For", "2.2.2.2"}}), "2.2.2.2");
}

TEST(RealIp, XForwardedForRecursiveTakesTheLastUntrusted) {
  ClientAddrConfig c = conf(
      "nginx_config: {http: {real_ip_header: X-Forwarded-For, real_ip_recursive: 'on', "
      "real_ip_from: [127.0.0.1, 10.0.0.0/8, 'fd00::/8', 'unix:']}}");
  EXPECT_TRUE(c.real_ip_recursive);
  EXPECT_EQ(client(c, "127.0.0.1", {{"X-Forwarded-For", "1.1.1.1, 2.2.2.2, 10.0.0.5, 10.0.0.6"}}), "2.2.2.2");
  EXPECT_EQ(client(c, "127.0.0.1", {{"X-Forwarded-For", "1.1.1.1,fd00::1"}}), "1.1.1.1");
  // every address trusted: the first one
  EXPECT_EQ(client(c, "127.0.0.1", {{"X-Forwarded-For", "10.0.0.1, 10.0.0.2"}}), "10.0.0.1");
  // across lines, the last line first
  EXPECT_EQ(client(c, "127.0.0.1", {{"X-Forwarded-For", "3.3.3.3"}, {"X-Forwarded-For", "10.0.0.9"}}), "3.3.3.3");
  EXPECT_EQ(client(c, "127.0.0.1", {{"X-Forwarded-For", "3.3.3.3"}, {"X-Forwarded-For", "4.4.4.4, 10.0.0.9"}}),
            "4.4.4.4");
  // an element that is not an address ends the walk with what was found
  EXPECT_EQ(client(c, "127.0.0.1", {{"X-Forwarded-For", "1.1.1.1, junk, 10.0.0.5"}}), "10.0.0.5");
  EXPECT_EQ(client(c, "127.0.0.1", {{"X-Forwarded-For", "1.1.1.1, junk"}}), "");
}

TEST(RealIp, OtherHeaderAndPeerNotListed) {
  ClientAddrConfig c = conf("nginx_config: {http: {real_ip_header: True-Client-IP, real_ip_from: ['192.0.2.0/24']}}");
  EXPECT_EQ(c.real_ip_header, "true-client-ip");
  EXPECT_EQ(client(c, "192.0.2.7", {{"true-client-ip", "10.0.0.1"}}), "10.0.0.1");
  EXPECT_EQ(client(c, "127.0.0.1", {{"true-client-ip", "10.0.0.1"}}), "");
  EXPECT_EQ(client(c, "192.0.2.7", {{"X-Real-IP", "10.0.0.1"}}), "");
}

TEST(RealIp, TrustedAddresses) {
  ClientAddrConfig c = conf("apisix: {trusted_addresses: ['10.0.0.0/8', '::1']}");
  ASSERT_TRUE(c.trusted_addresses);
  EXPECT_TRUE(c.trusted_addresses->match("10.9.9.9"));
  EXPECT_TRUE(c.trusted_addresses->match("::1"));
  EXPECT_FALSE(c.trusted_addresses->match("127.0.0.1"));
}

TEST(RealIp, InvalidValuesNameTheKey) {
  struct Case { const char* yaml; const char* want; };
  for (const Case& k : {
           Case{"nginx_config: {http: {real_ip_from: ['10.0.0.0/33']}}", "nginx_config.http.real_ip_from[0]"},
           Case{"nginx_config: {http: {real_ip_from: [127.0.0.1, 'nope']}}", "nginx_config.http.real_ip_from[1]"},
           Case{"nginx_config: {http: {real_ip_from: 127.0.0.1}}", "nginx_config.http.real_ip_from"},
           Case{"nginx_config: {http: {real_ip_header: 'a b'}}", "nginx_config.http.real_ip_header"},
           Case{"nginx_config: {http: {real_ip_header: proxy_protocol}}", "nginx_config.http.real_ip_header"},
           Case{"nginx_config: {http: {real_ip_recursive: maybe}}", "nginx_config.http.real_ip_recursive"},
           Case{"apisix: {trusted_addresses: ['1.2.3.4/40']}", "apisix.trusted_addresses[0]"},
           Case{"apisix: {trusted_addresses: ['unix:']}", "apisix.trusted_addresses[0]"},
           Case{"apisix: {trusted_addresses: []}", "apisix.trusted_addresses"},
       }) {
    auto c = parse_node_config(k.yaml, ".");
    ASSERT_FALSE(c.ok()) << k.yaml;
    EXPECT_NE(c.error().find(k.want), std::string::npos) << c.error();
  }
}

TEST(RealIp, KeysAreKnown) {
  auto c = parse_node_config(
      "apisix: {trusted_addresses: [127.0.0.1]}\n"
      "nginx_config: {http: {real_ip_header: X-Real-IP, real_ip_recursive: 'off', real_ip_from: [127.0.0.1, 'unix:']}}",
      ".");
  ASSERT_TRUE(c.ok()) << c.error();
  for (const auto& w : c->warnings) EXPECT_EQ(w.find("real_ip"), std::string::npos) << w;
  for (const auto& w : c->warnings) EXPECT_EQ(w.find("trusted_addresses"), std::string::npos) << w;
}

// The X-Forwarded-* values plugins and the upstream see (APISIX's ngx_tpl
// overwrites them; a trusted peer's own are put back).
TEST(RealIp, ForwardedHeadersAsPluginsSeeThem) {
  http::RequestHead req;
  req.host = "Example.COM:8080";
  req.headers = {{"Host", "Example.COM:8080"}, {"X-Forwarded-Proto", "https"}, {"X-Forwarded-Host", "evil"},
                 {"Forwarded", "for=1.2.3.4"}};
  plugins::RequestCtx ctx;
  ctx.req = &req;
  ctx.scheme = "http";
  ctx.host = "example.com";
  ctx.server_port = 9080;
  EXPECT_EQ(ctx.request_header("X-Forwarded-Proto"), "http");
  EXPECT_EQ(ctx.request_header("x-forwarded-host"), "Example.COM:8080");
  EXPECT_EQ(ctx.var("http_x_forwarded_port"), "8080");
  EXPECT_EQ(ctx.request_header("Forwarded"), std::nullopt);
  ctx.forwarded_trusted = true;
  EXPECT_EQ(ctx.request_header("X-Forwarded-Proto"), "https");
  EXPECT_EQ(ctx.var("http_x_forwarded_host"), "evil");
  EXPECT_EQ(ctx.request_header("X-Forwarded-Port"), "8080");  // not sent: this hop's
  EXPECT_EQ(ctx.request_header("Forwarded"), "for=1.2.3.4");
  req.host = "";
  ctx.forwarded_trusted = false;
  EXPECT_EQ(ctx.request_header("X-Forwarded-Port"), "9080");
  EXPECT_EQ(ctx.request_header("X-Forwarded-Host"), "example.com");
}

// APISIX (t/core/trusted-addresses.t 17, 18): an untrusted peer's
// X-Forwarded-For is gone for plugins and route vars when a trust boundary
// is set; $original_x_forwarded_for keeps it.
TEST(RealIp, DroppedXffIsInvisible) {
  http::RequestHead req;
  req.headers = {{"X-Forwarded-For", "9.9.9.9, 8.8.8.8"}};
  plugins::RequestCtx ctx;
  ctx.req = &req;
  EXPECT_EQ(ctx.var("http_x_forwarded_for"), "9.9.9.9, 8.8.8.8");
  ctx.xff_dropped = true;
  EXPECT_EQ(ctx.var("http_x_forwarded_for"), std::nullopt);
  EXPECT_EQ(ctx.request_header("X-Forwarded-For"), std::nullopt);
  EXPECT_EQ(ctx.var("original_x_forwarded_for"), "9.9.9.9, 8.8.8.8");
}
