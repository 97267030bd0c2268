#include "dns/resolver.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "core/log.h"
#include "dns/message.h"

namespace holdfast::dns {
namespace asio = boost::asio;
using udp = asio::ip::udp;

namespace {

constexpr double kMinRefresh = 1;     // seconds: floor for TTL 0 and for retries
constexpr double kMaxBackoff = 30;    // seconds between tries of a failing name

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  if (in) ss << in.rdbuf();
  return ss.str();
}

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

std::string join(const Addresses& a) {
  std::vector<std::string> s;
  for (const auto& x : a) s.push_back(x.to_string());
  return fmt::format("{}", fmt::join(s, ", "));
}

// A socket that is closed when it goes out of scope.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

socklen_t to_sockaddr(const udp::endpoint& ep, sockaddr_storage& ss) {
  std::memcpy(&ss, ep.data(), ep.size());
  return static_cast<socklen_t>(ep.size());
}

// Waits until `fd` is ready for `events`, the deadline passes (0) or the
// resolver is stopping (-1).
int wait_fd(int fd, short events, int wake_fd, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) return 0;
    pollfd p[2] = {{fd, events, 0}, {wake_fd, POLLIN, 0}};
    int n = ::poll(p, wake_fd >= 0 ? 2 : 1, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (wake_fd >= 0 && p[1].revents) return -1;
    if (n > 0) return 1;
  }
}

struct Exchange {
  bool answered = false;  // a reply to our query arrived (see reply)
  Reply reply;
  std::string error;
};

// One query over UDP: sent, and sent again halfway to the deadline when no
// reply came; replies that are not ours (id, question) are ignored.
Exchange exchange_udp(const udp::endpoint& ns, const std::string& query, uint16_t id, const std::string& name,
                      uint16_t qtype, std::chrono::steady_clock::time_point deadline, int wake_fd) {
  Exchange x;
  Fd s{::socket(ns.address().is_v6() ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)};
  sockaddr_storage ss;
  socklen_t len = to_sockaddr(ns, ss);
  // connect(): the kernel then drops datagrams from any other address.
  if (s.fd < 0 || ::connect(s.fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    x.error = fmt::format("cannot reach nameserver {}", ns.address().to_string());
    return x;
  }
  const auto start = std::chrono::steady_clock::now();
  const auto resend = start + (deadline - start) / 2;
  bool resent = false;
  if (::send(s.fd, query.data(), query.size(), 0) < 0) {
    x.error = fmt::format("cannot send to nameserver {}: {}", ns.address().to_string(), std::strerror(errno));
    return x;
  }
  uint8_t buf[4096];
  for (;;) {
    int w = wait_fd(s.fd, POLLIN, wake_fd, resent ? deadline : resend);
    if (w < 0) {
      x.error = "stopped";
      return x;
    }
    if (w == 0) {
      if (!resent && std::chrono::steady_clock::now() < deadline) {
        resent = true;
        (void)::send(s.fd, query.data(), query.size(), 0);
        continue;
      }
      x.error = fmt::format("nameserver {} port {} did not answer in time", ns.address().to_string(), ns.port());
      return x;
    }
    ssize_t n = ::recv(s.fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      x.error = fmt::format("nameserver {} port {}: {}", ns.address().to_string(), ns.port(), std::strerror(errno));
      return x;
    }
    Reply r = parse_reply(std::span<const uint8_t>(buf, static_cast<size_t>(n)), id, name, qtype);
    if (r.kind == Reply::Kind::mismatch) continue;
    if (r.kind == Reply::Kind::malformed) {
      x.error = fmt::format("bad reply from nameserver {}: {}", ns.address().to_string(), r.error);
      return x;
    }
    x.answered = true;
    x.reply = std::move(r);
    return x;
  }
}

// Reads or writes exactly `len` bytes on a non-blocking TCP socket.
bool tcp_io(int fd, bool write, uint8_t* p, size_t len, std::chrono::steady_clock::time_point deadline, int wake_fd) {
  while (len) {
    ssize_t n = write ? ::send(fd, p, len, MSG_NOSIGNAL) : ::recv(fd, p, len, 0);
    if (n > 0) {
      p += n;
      len -= static_cast<size_t>(n);
      continue;
    }
    if (n == 0) return false;
    if (errno != EAGAIN && errno != EINTR) return false;
    if (wait_fd(fd, write ? POLLOUT : POLLIN, wake_fd, deadline) <= 0) return false;
  }
  return true;
}

// The same query over TCP (RFC 1035 §4.2.2: two length bytes, then the message).
Exchange exchange_tcp(const udp::endpoint& ns, const std::string& query, uint16_t id, const std::string& name,
                      uint16_t qtype, std::chrono::steady_clock::time_point deadline, int wake_fd) {
  Exchange x;
  x.error = fmt::format("nameserver {} port {}: the truncated answer could not be fetched over TCP",
                        ns.address().to_string(), ns.port());
  Fd s{::socket(ns.address().is_v6() ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)};
  if (s.fd < 0) return x;
  sockaddr_storage ss;
  socklen_t len = to_sockaddr(ns, ss);
  if (::connect(s.fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    if (errno != EINPROGRESS || wait_fd(s.fd, POLLOUT, wake_fd, deadline) <= 0) return x;
    int err = 0;
    socklen_t el = sizeof err;
    if (::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) return x;
  }
  std::string framed;
  framed += static_cast<char>(query.size() >> 8);
  framed += static_cast<char>(query.size() & 0xFF);
  framed += query;
  if (!tcp_io(s.fd, true, reinterpret_cast<uint8_t*>(framed.data()), framed.size(), deadline, wake_fd)) return x;
  uint8_t lenb[2];
  if (!tcp_io(s.fd, false, lenb, 2, deadline, wake_fd)) return x;
  std::vector<uint8_t> msg(static_cast<size_t>(lenb[0] << 8 | lenb[1]));
  if (!tcp_io(s.fd, false, msg.data(), msg.size(), deadline, wake_fd)) return x;
  Reply r = parse_reply(msg, id, name, qtype);
  // Over TCP there is no other traffic on the connection: a reply that is
  // not ours, or still truncated, is a failure.
  if (r.kind != Reply::Kind::ok || r.truncated) {
    x.error = fmt::format("bad reply over TCP from nameserver {}{}", ns.address().to_string(),
                          r.error.empty() ? "" : ": " + r.error);
    return x;
  }
  x.answered = true;
  x.reply = std::move(r);
  x.error.clear();
  return x;
}

uint16_t random_id() {
  thread_local std::mt19937 rng{std::random_device{}()};
  return static_cast<uint16_t>(rng());
}

}  // namespace

ResolvConf parse_resolv_conf(std::string_view text) {
  ResolvConf rc;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    if (auto c = line.find_first_of("#;"); c != std::string::npos) line.resize(c);
    std::istringstream ls(line);
    std::string key;
    ls >> key;
    if (key == "nameserver") {
      std::string ip;
      ls >> ip;
      boost::system::error_code ec;
      // a malformed entry is skipped
      auto addr = asio::ip::make_address(ip, ec);
      if (!ec) rc.nameservers.emplace_back(addr, 53);
    } else if (key == "search" || key == "domain") {
      rc.search.clear();  // the last search/domain line wins, as in the C library
      std::string d;
      while (ls >> d) rc.search.push_back(lower(d));
    } else if (key == "options") {
      std::string o;
      while (ls >> o)
        if (o.rfind("ndots:", 0) == 0) rc.ndots = std::clamp(std::atoi(o.c_str() + 6), 0, 15);
    }
  }
  return rc;
}

std::unordered_map<std::string, Addresses> parse_hosts(std::string_view text) {
  std::unordered_map<std::string, Addresses> out;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    if (auto c = line.find('#'); c != std::string::npos) line.resize(c);
    std::istringstream ls(line);
    std::string ip, name;
    if (!(ls >> ip)) continue;
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(ip, ec);
    if (ec) continue;
    while (ls >> name) {
      auto& v = out[lower(name)];
      if (std::find(v.begin(), v.end(), addr) == v.end()) v.push_back(addr);
    }
  }
  for (auto& [n, v] : out) std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.is_v4() && !b.is_v4(); });
  return out;
}

std::vector<std::string> candidates(const std::string& name, const ResolvConf& rc, bool search) {
  std::vector<std::string> out;
  if (!search || rc.search.empty()) return {name};
  const auto dots = std::count(name.begin(), name.end(), '.');
  if (dots >= rc.ndots) out.push_back(name);
  for (const auto& d : rc.search) out.push_back(name + "." + d);
  if (dots < rc.ndots) out.push_back(name);
  return out;
}

Resolver::Resolver(asio::io_context& control, const DnsConfig& cfg, const std::string& resolv_conf,
                   const std::string& hosts)
    : control_(control), cfg_(cfg) {
  rc_ = parse_resolv_conf(read_file(resolv_conf));
  if (!cfg_.nameservers.empty()) {
    rc_.nameservers.clear();
    for (const auto& ns : cfg_.nameservers) rc_.nameservers.emplace_back(asio::ip::make_address(ns.ip), ns.port);
  }
  hosts_ = parse_hosts(read_file(hosts));
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  thread_ = std::thread([this] { run(); });
}

Resolver::~Resolver() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  uint64_t one = 1;
  if (wake_fd_ >= 0) (void)!::write(wake_fd_, &one, sizeof one);
  thread_.join();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

std::optional<Addresses> Resolver::lookup(const std::string& host) {
  boost::system::error_code ec;
  auto literal = asio::ip::make_address(host, ec);
  if (!ec) return Addresses{literal};
  std::string name = lower(host);
  if (auto h = hosts_.find(name); h != hosts_.end()) return h->second;
  auto [it, fresh] = cache_.try_emplace(name);
  if (fresh) schedule(name, Clock::now());
  if (!it->second.resolved) return std::nullopt;
  return it->second.addrs;
}

void Resolver::retain(const std::vector<std::string>& names) {
  std::vector<std::string> keep;
  for (const auto& n : names) keep.push_back(lower(n));
  std::sort(keep.begin(), keep.end());
  std::lock_guard lk(mu_);
  for (auto it = cache_.begin(); it != cache_.end();) {
    if (std::binary_search(keep.begin(), keep.end(), it->first)) {
      ++it;
      continue;
    }
    due_.erase(it->first);
    it = cache_.erase(it);
  }
}

void Resolver::schedule(const std::string& name, Clock::time_point when) {
  {
    std::lock_guard lk(mu_);
    due_[name] = when;
  }
  cv_.notify_all();
}

void Resolver::run() {
  std::unique_lock lk(mu_);
  while (!stop_) {
    auto next = std::min_element(due_.begin(), due_.end(),
                                 [](const auto& a, const auto& b) { return a.second < b.second; });
    if (next == due_.end()) {
      cv_.wait(lk);
      continue;
    }
    if (next->second > Clock::now()) {
      cv_.wait_until(lk, next->second);
      continue;
    }
    std::string name = next->first;
    due_.erase(next);
    lk.unlock();
    Outcome out = resolve(name);
    lk.lock();
    if (stop_) break;
    asio::post(control_, [this, name = std::move(name), out = std::move(out)]() mutable { apply(name, std::move(out)); });
  }
}

void Resolver::apply(const std::string& name, Outcome out) {
  auto it = cache_.find(name);
  if (it == cache_.end()) return;  // no longer used
  Entry& e = it->second;
  double next_in;
  if (out.ok) {
    const bool changed = !e.resolved || e.addrs != out.addrs;
    if (e.failing) log::info("dns: {} resolves again: {}", name, join(out.addrs));
    else if (changed) log::info("dns: {} resolves to {}", name, join(out.addrs));
    e.failing = false;
    e.resolved = true;
    e.backoff = 0;
    e.addrs = std::move(out.addrs);
    double ttl = cfg_.valid > 0 ? cfg_.valid : out.ttl;
    // Ask again a little before the TTL runs out, so that fresh addresses
    // are usually in place when the old ones expire.
    next_in = std::max(kMinRefresh, ttl - std::min(ttl / 10, 5.0));
    if (changed && !change_posted_ && on_change_) {
      change_posted_ = true;
      // Posted, so that answers that arrive together cause one rebuild.
      asio::post(control_, [this] {
        change_posted_ = false;
        on_change_();
      });
    }
  } else {
    if (!e.failing) {
      e.failing = true;
      if (e.resolved)
        log::warn("dns: cannot resolve {}: {}; keeping its last addresses {} until it resolves again", name, out.error,
                  join(e.addrs));
      else
        log::warn("dns: cannot resolve {}: {}; its nodes are unusable until it resolves", name, out.error);
    }
    e.backoff = std::clamp(e.backoff * 2, kMinRefresh, kMaxBackoff);
    next_in = e.backoff;
  }
  schedule(name, Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(next_in * 1000)));
}

Outcome Resolver::query(const std::string& name, uint16_t qtype) {
  Outcome o;
  if (rc_.nameservers.empty()) {
    o.error = "no nameserver (apisix.dns_resolver is empty and /etc/resolv.conf has none)";
    return o;
  }
  const uint16_t id = random_id();
  auto q = encode_query(id, name, qtype);
  if (!q) {
    o.error = q.error();
    return o;
  }
  // apisix.resolver_timeout is shared by the nameservers, tried in order.
  const auto per_server = std::chrono::milliseconds(
      std::max<int64_t>(100, static_cast<int64_t>(cfg_.timeout * 1000 / static_cast<double>(rc_.nameservers.size()))));
  std::string first_error;
  for (const auto& ns : rc_.nameservers) {
    const auto deadline = std::chrono::steady_clock::now() + per_server;
    Exchange x = exchange_udp(ns, *q, id, name, qtype, deadline, wake_fd_);
    if (x.answered && x.reply.truncated) x = exchange_tcp(ns, *q, id, name, qtype, deadline, wake_fd_);
    if (!x.answered) {
      if (first_error.empty()) first_error = x.error;
      if (x.error == "stopped") break;
      continue;
    }
    const Reply& r = x.reply;
    if (r.rcode == 0 || r.rcode == kRcodeNxdomain) {
      o.ok = r.rcode == 0;
      o.addrs = r.addrs;
      o.ttl = r.ttl;
      if (r.rcode == kRcodeNxdomain) o.error = "no such name (NXDOMAIN)";
      return o;
    }
    // SERVFAIL, REFUSED, ...: another nameserver may know better.
    if (first_error.empty()) first_error = fmt::format("nameserver {} answered rcode {}", ns.address().to_string(), r.rcode);
  }
  o.error = first_error;
  return o;
}

Outcome Resolver::resolve(const std::string& name) {
  Outcome first;
  for (const auto& c : candidates(name, rc_, cfg_.search)) {
    Outcome o = query(c, kTypeA);
    // No A record (but the name exists): try AAAA, as APISIX's order A, AAAA.
    if (o.ok && o.addrs.empty()) o = query(c, kTypeAaaa);
    if (o.ok && !o.addrs.empty()) {
      std::sort(o.addrs.begin(), o.addrs.end());
      o.addrs.erase(std::unique(o.addrs.begin(), o.addrs.end()), o.addrs.end());
      return o;
    }
    if (o.ok) {
      o.ok = false;
      o.error = "no A or AAAA record";
    }
    if (first.error.empty()) first = o;
    // Only a name that does not exist (or has no address) moves on to the
    // next search domain; a nameserver that does not answer ends the search.
    if (o.error.find("NXDOMAIN") == std::string::npos && o.error != "no A or AAAA record") return o;
  }
  return first;
}

}  // namespace holdfast::dns
