// dns::Resolver helpers (resolv.conf, /etc/hosts, search list) and one
// blocking resolution against a nameserver on loopback that truncates its
// UDP answer, so the resolver must ask again over TCP.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <thread>

#include "dns/resolver.h"

using namespace holdfast;

TEST(DnsResolver, ResolvConf) {
  auto rc = dns::parse_resolv_conf(
      "# comment\nnameserver 10.0.0.53\nnameserver not-an-ip\nnameserver ::1 ; trailing\n"
      "search a.example b.example\noptions ndots:2 timeout:1\n");
  ASSERT_EQ(rc.nameservers.size(), 2u);
  EXPECT_EQ(rc.nameservers[0].address().to_string(), "10.0.0.53");
  EXPECT_EQ(rc.nameservers[0].port(), 53);
  EXPECT_EQ(rc.nameservers[1].address().to_string(), "::1");
  EXPECT_EQ(rc.search, (std::vector<std::string>{"a.example", "b.example"}));
  EXPECT_EQ(rc.ndots, 2);
}

TEST(DnsResolver, HostsFile) {
  auto h = dns::parse_hosts("::1 localhost ip6-localhost\n127.0.0.1\tlocalhost\n# 1.2.3.4 gone\n10.1.1.1 Backend.Local backend # x\nbad line\n");
  ASSERT_EQ(h["localhost"].size(), 2u);
  EXPECT_EQ(h["localhost"][0].to_string(), "127.0.0.1");  // IPv4 first
  EXPECT_EQ(h["backend.local"][0].to_string(), "10.1.1.1");
  EXPECT_EQ(h.count("gone"), 0u);
}

TEST(DnsResolver, SearchCandidates) {
  dns::ResolvConf rc;
  rc.search = {"svc.local"};
  EXPECT_EQ(dns::candidates("api", rc, true), (std::vector<std::string>{"api.svc.local", "api"}));
  EXPECT_EQ(dns::candidates("api.example", rc, true), (std::vector<std::string>{"api.example", "api.example.svc.local"}));
  EXPECT_EQ(dns::candidates("api", rc, false), (std::vector<std::string>{"api"}));
}

TEST(DnsResolver, LiteralsAndHostsAnswerAtOnce) {
  boost::asio::io_context io;
  char path[] = "/tmp/holdfast-hosts-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  std::string text = "10.9.8.7 origin.internal\n";
  ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  DnsConfig cfg;
  cfg.nameservers = {{"127.0.0.1", 9}};
  dns::Resolver r(io, cfg, "/nonexistent", path);
  unlink(path);
  EXPECT_EQ(r.lookup("192.0.2.1")->at(0).to_string(), "192.0.2.1");
  EXPECT_EQ(r.lookup("::1")->at(0).to_string(), "::1");
  EXPECT_EQ(r.lookup("ORIGIN.internal")->at(0).to_string(), "10.9.8.7");
  EXPECT_FALSE(r.lookup("not-yet.example"));  // queued for the resolver thread
}

namespace {

std::vector<uint8_t> answer_for(const uint8_t* q, size_t n, bool truncated) {
  std::vector<uint8_t> a(q, q + n);
  a[2] = static_cast<uint8_t>(0x81 | (truncated ? 0x02 : 0));
  a[3] = 0x80;
  if (truncated) return a;  // header + question only
  a[7] = 2;                 // two answers
  for (uint8_t last : {20, 10}) {
    const uint8_t rr[] = {0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 42, 0, 4, 192, 0, 2, last};
    a.insert(a.end(), rr, rr + sizeof rr);
  }
  return a;
}

}  // namespace

TEST(DnsResolver, TruncatedUdpAnswerIsFetchedOverTcp) {
  // One port for UDP and TCP: the kernel picks the UDP port, and the TCP
  // port of that number may be taken by another process's socket; then pick
  // again. (The test failed once in a full unit run while builds loaded the
  // machine; this bind and the 3 s timeout were the two ways it could.)
  int u = -1, t = -1;
  sockaddr_in sa{};
  for (int attempt = 0; attempt < 50 && t < 0; ++attempt) {
    if (u >= 0) close(u);
    u = socket(AF_INET, SOCK_DGRAM, 0);
    sa = {};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(u, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    socklen_t len = sizeof sa;
    getsockname(u, reinterpret_cast<sockaddr*>(&sa), &len);
    t = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(t, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      close(t);
      t = -1;
    }
  }
  ASSERT_GE(t, 0);
  ASSERT_EQ(listen(t, 4), 0);
  std::thread server([&] {
    uint8_t buf[512];
    sockaddr_in from{};
    socklen_t fl = sizeof from;
    ssize_t n = recvfrom(u, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &fl);
    auto tc = answer_for(buf, static_cast<size_t>(n), true);
    sendto(u, tc.data(), tc.size(), 0, reinterpret_cast<sockaddr*>(&from), fl);
    int c = accept(t, nullptr, nullptr);
    uint8_t lb[2];
    if (recv(c, lb, 2, MSG_WAITALL) != 2) return;
    size_t qn = static_cast<size_t>(lb[0] << 8 | lb[1]);
    if (recv(c, buf, qn, MSG_WAITALL) != static_cast<ssize_t>(qn)) return;
    auto full = answer_for(buf, qn, false);
    uint8_t hl[2] = {static_cast<uint8_t>(full.size() >> 8), static_cast<uint8_t>(full.size())};
    send(c, hl, 2, 0);
    send(c, full.data(), full.size(), 0);
    close(c);
  });
  boost::asio::io_context io;
  DnsConfig cfg;
  cfg.nameservers = {{"127.0.0.1", ntohs(sa.sin_port)}};
  cfg.timeout = 10;  // generous: this test is about the TCP retry, not timing
  cfg.search = false;
  dns::Resolver r(io, cfg, "/nonexistent", "/nonexistent");
  dns::Outcome o = r.resolve("big.example");
  server.join();
  close(u);
  close(t);
  ASSERT_TRUE(o.ok) << o.error;
  ASSERT_EQ(o.addrs.size(), 2u);
  EXPECT_EQ(o.addrs[0].to_string(), "192.0.2.10");  // sorted
  EXPECT_EQ(o.addrs[1].to_string(), "192.0.2.20");
  EXPECT_EQ(o.ttl, 42u);
}

TEST(DnsResolver, SilentNameserverFailsWithinTheTimeout) {
  int u = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(u, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  socklen_t len = sizeof sa;
  getsockname(u, reinterpret_cast<sockaddr*>(&sa), &len);
  boost::asio::io_context io;
  DnsConfig cfg;
  cfg.nameservers = {{"127.0.0.1", ntohs(sa.sin_port)}};
  cfg.timeout = 0.3;
  cfg.search = false;
  dns::Resolver r(io, cfg, "/nonexistent", "/nonexistent");
  dns::Outcome o = r.resolve("quiet.example");
  close(u);
  EXPECT_FALSE(o.ok);
  EXPECT_NE(o.error.find("did not answer"), std::string::npos) << o.error;
}

TEST(DnsResolver, ConfigKeys) {
  auto c = parse_node_config(
      "apisix:\n  dns_resolver: [\"10.0.0.2\", \"127.0.0.1:5353\", \"[::1]:53\", \"fd00::53\"]\n"
      "  dns_resolver_valid: 30\n  resolver_timeout: 2\n  enable_resolv_search_opt: false\n",
      ".");
  ASSERT_TRUE(c) << c.error();
  ASSERT_EQ(c->dns.nameservers.size(), 4u);
  EXPECT_EQ(c->dns.nameservers[0].ip, "10.0.0.2");
  EXPECT_EQ(c->dns.nameservers[0].port, 53);
  EXPECT_EQ(c->dns.nameservers[1].port, 5353);
  EXPECT_EQ(c->dns.nameservers[2].ip, "::1");
  EXPECT_EQ(c->dns.nameservers[3].ip, "fd00::53");
  EXPECT_EQ(c->dns.valid, 30);
  EXPECT_EQ(c->dns.timeout, 2);
  EXPECT_FALSE(c->dns.search);
  EXPECT_TRUE(c->warnings.empty());
  auto d = parse_node_config("apisix: {}", ".");
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->dns.nameservers.empty());
  EXPECT_EQ(d->dns.timeout, 5);  // APISIX's default
  EXPECT_TRUE(d->dns.search);
  auto bad = parse_node_config("apisix: {dns_resolver: [\"dns.example:53\"]}", ".");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("apisix.dns_resolver[0]"), std::string::npos) << bad.error();
  EXPECT_FALSE(parse_node_config("apisix: {dns_resolver: [\"10.0.0.1:99999\"]}", "."));
  EXPECT_FALSE(parse_node_config("apisix: {resolver_timeout: 0}", "."));
}
