// Resolves the host names of upstream nodes for the snapshot compiler, off
// the request path. The cache (name -> addresses) is read and written only
// on the control thread; queries run on the resolver's own thread, which
// blocks on the network so that nothing else has to. A result is posted back
// to the control thread; when a name's addresses change, `on_change` asks
// the config manager to publish a new snapshot.
//
// IP literals and /etc/hosts names are answered at once. A name seen for the
// first time has no address until its first answer arrives (its nodes are
// unusable meanwhile). Names are re-resolved in the background shortly
// before their TTL (or apisix.dns_resolver_valid) runs out; a name that
// stops resolving keeps its last addresses, with one log line per streak of
// failures.
#pragma once
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/udp.hpp>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/config.h"

namespace holdfast::dns {

using Addresses = std::vector<boost::asio::ip::address>;

// What one resolution of one name produced (resolver thread -> control).
struct Outcome {
  bool ok = false;
  Addresses addrs;      // sorted, unique
  uint32_t ttl = 0;     // seconds
  std::string error;    // when !ok
};

// The parts of /etc/resolv.conf the resolver uses.
struct ResolvConf {
  std::vector<boost::asio::ip::udp::endpoint> nameservers;
  std::vector<std::string> search;
  int ndots = 1;
};
ResolvConf parse_resolv_conf(std::string_view text);
// /etc/hosts: lower-case name -> addresses (sorted, IPv4 first).
std::unordered_map<std::string, Addresses> parse_hosts(std::string_view text);
// The names to try for `name`, in order, as the C library does: the name as
// given first when it has at least `ndots` dots, after the search list otherwise.
std::vector<std::string> candidates(const std::string& name, const ResolvConf& rc, bool search);

class Resolver {
 public:
  // Reads /etc/resolv.conf and /etc/hosts (paths for tests) once, now.
  Resolver(boost::asio::io_context& control, const DnsConfig& cfg, const std::string& resolv_conf = "/etc/resolv.conf",
           const std::string& hosts = "/etc/hosts");
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // Control thread. Called (once per burst of changes) when some name's
  // addresses changed.
  void on_change(std::function<void()> f) { on_change_ = std::move(f); }
  // Control thread. The addresses of `host`: an IP literal is itself; a
  // name answers from /etc/hosts or the cache. nullopt: not resolved yet (a
  // resolution is now under way).
  std::optional<Addresses> lookup(const std::string& host);
  // Control thread. The names the published snapshot uses; the others are
  // forgotten and no longer re-resolved.
  void retain(const std::vector<std::string>& names);

  // Blocking: one resolution of `name` with the configured nameservers.
  // Runs on the resolver thread (public for tests).
  Outcome resolve(const std::string& name);

 private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    Addresses addrs;
    bool resolved = false;  // has ever had an answer
    bool failing = false;   // in a streak of failures (logged once)
    double backoff = 0;     // seconds before the next try after a failure
  };
  void run();
  void apply(const std::string& name, Outcome out);
  void schedule(const std::string& name, Clock::time_point when);
  Outcome query(const std::string& name, uint16_t qtype);

  boost::asio::io_context& control_;
  const DnsConfig cfg_;
  ResolvConf rc_;
  std::unordered_map<std::string, Addresses> hosts_;
  std::function<void()> on_change_;
  bool change_posted_ = false;
  std::unordered_map<std::string, Entry> cache_;  // control thread only

  // Shared with the resolver thread.
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Clock::time_point> due_;  // names to resolve, and when
  bool stop_ = false;
  int wake_fd_ = -1;  // eventfd: interrupts a query in flight at shutdown
  std::thread thread_;
};

}  // namespace holdfast::dns
