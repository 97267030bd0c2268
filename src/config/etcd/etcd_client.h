// etcd v3 through its HTTP/JSON gateway (/v3/kv/range, /v3/kv/put,
// /v3/kv/deleterange, /v3/kv/txn, streaming /v3/watch), with several hosts
// to fail over between, user/password auth and TLS. Control thread only.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "http/client.h"

namespace holdfast::config {

struct EtcdOptions {
  std::vector<std::string> hosts{"http://127.0.0.1:2379"};
  std::string prefix = "/apisix";
  double timeout = 30;         // per request, seconds
  std::string user, password;
  http::TlsOptions tls;
};

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
};

struct RangeResult {
  int64_t revision = 0;
  std::vector<KeyValue> kvs;
};

struct WatchEvent {
  bool is_delete = false;
  KeyValue kv;
};

struct WatchResponse {
  int64_t revision = 0;
  bool created = false;
  bool canceled = false;
  int64_t compact_revision = 0;
  std::string cancel_reason;
  std::vector<WatchEvent> events;
};

// The smallest key greater than every key starting with `prefix`.
std::string prefix_end(const std::string& prefix);

class EtcdClient {
 public:
  EtcdClient(boost::asio::any_io_executor ex, EtcdOptions opts);
  ~EtcdClient();

  boost::asio::awaitable<Result<RangeResult>> range(std::string key, std::string range_end);
  boost::asio::awaitable<Result<RangeResult>> get_prefix(std::string prefix) {
    return range(prefix, prefix_end(prefix));
  }
  boost::asio::awaitable<Result<RangeResult>> get(std::string key) { return range(key, ""); }
  // Returns the revision of the write.
  boost::asio::awaitable<Result<int64_t>> put(std::string key, std::string value);
  // Returns the number of deleted keys (range_end "" = just the key).
  boost::asio::awaitable<Result<int64_t>> del(std::string key, std::string range_end = "");
  // Writes only if the key's mod_revision still equals `mod_revision`
  // (0 = the key must not exist). False when the comparison failed.
  boost::asio::awaitable<Result<bool>> put_if(std::string key, std::string value, int64_t mod_revision);
  // Writes only if no key in [range_start, range_end) was modified after
  // `revision` (a range read's header revision). False when one was.
  boost::asio::awaitable<Result<bool>> put_if_range_unchanged(std::string key, std::string value, std::string range_start,
                                                              std::string range_end, int64_t revision);
  // Streams watch responses for keys under `prefix` from `start_revision`
  // until `on_response` returns false, the stream breaks, or it idles.
  boost::asio::awaitable<Status> watch(std::string prefix, int64_t start_revision,
                                       std::function<bool(const WatchResponse&)> on_response, double idle_timeout);
  // Aborts in-flight calls (used on shutdown).
  void cancel();
  // Forgets kept-alive connections (after a watch went silent, the path
  // they took may be half-dead: a full load must not wait on one).
  void drop_idle();
  const std::string& current_host() const { return opts_.hosts[current_]; }
  const EtcdOptions& options() const { return opts_; }

 private:
  boost::asio::awaitable<Result<boost::json::value>> call(const std::string& path, std::string body);
  boost::asio::awaitable<Status> authenticate(http::HttpClient& client);
  http::HttpClient& client(size_t i);

  boost::asio::any_io_executor ex_;
  EtcdOptions opts_;
  size_t current_ = 0;
  std::vector<std::unique_ptr<http::HttpClient>> clients_;
  std::string token_;
};

}  // namespace holdfast::config
