// Resource types of the APISIX model (APISIX_COMPAT §2), parsed from JSON
// with defaults applied. Plugin configs stay raw JSON here; the config
// manager compiles them through the plugin registry.
#pragma once
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace holdfast::model {

struct Timeout {
  double connect = 60, send = 60, read = 60;
};

struct UpstreamNode {
  std::string host;   // without brackets for IPv6
  uint16_t port = 80;
  int weight = 1;
  int priority = 0;
};

struct HealthCheckConfig {
  bool active = false, passive = false;
  std::string type = "http";       // http | https | tcp
  double timeout = 1;
  std::string http_path = "/";
  std::string host;
  uint16_t port = 0;
  std::vector<std::string> req_headers;
  double healthy_interval = 1;
  std::vector<int> healthy_statuses{200, 302};
  int healthy_successes = 2;
  double unhealthy_interval = 1;
  std::vector<int> unhealthy_statuses{429, 404, 500, 501, 502, 503, 504, 505};
  int http_failures = 5, tcp_failures = 2, timeouts = 3;
  // passive
  std::vector<int> passive_healthy_statuses;
  int passive_successes = 5;
  std::vector<int> passive_unhealthy_statuses{429, 500, 503};
  bool https_verify_certificate = true;  // APISIX's default (type: https only)
  int passive_http_failures = 5, passive_tcp_failures = 2, passive_timeouts = 7;
};

// An upstream's `tls` (APISIX upstream schema): how a `scheme: https`
// connection verifies the origin and which client certificate it shows.
struct UpstreamTls {
  bool verify = false;         // APISIX's default; applied to every TLS upstream here
  std::string client_cert;     // PEM (with client_key), or
  std::string client_key;      // PEM, decrypted by the config source
  std::string client_cert_id;  // an SSL object of type client
};

struct Upstream {
  std::string id;
  std::string type = "roundrobin";  // roundrobin | chash | least_conn | ewma
  std::vector<UpstreamNode> nodes;
  std::string hash_on = "vars";
  std::string key;
  int retries = -1;                 // -1: number of nodes - 1
  double retry_timeout = 0;
  std::optional<Timeout> timeout;
  std::string scheme = "http";
  std::string pass_host = "pass";
  std::string upstream_host;
  int keepalive_size = 320;
  double keepalive_idle = 60;
  int keepalive_requests = 1000;
  std::optional<HealthCheckConfig> checks;
  UpstreamTls tls;
};

struct Route {
  std::string id;
  std::vector<std::string> uris;
  std::vector<std::string> hosts;
  std::vector<std::string> remote_addrs;
  std::vector<std::string> methods;
  boost::json::value vars;          // null when absent
  int64_t priority = 0;
  boost::json::object plugins;
  std::shared_ptr<const Upstream> upstream;  // embedded
  std::string upstream_id, service_id, plugin_config_id;
  std::optional<Timeout> timeout;
  std::optional<bool> enable_websocket;
  int status = 1;
  std::string name;
};

struct Service {
  std::string id;
  std::string name;  // prometheus' prefer_name
  boost::json::object plugins;
  std::shared_ptr<const Upstream> upstream;
  std::string upstream_id;
  std::optional<bool> enable_websocket;
  std::vector<std::string> hosts;
};

struct PluginSet {  // plugin_config and global_rule share this shape
  std::string id;
  boost::json::object plugins;
};

struct Consumer {
  std::string username;
  std::string id;                // username, or "<username>/credentials/<id>" for a credential
  std::string credential_id;     // set for credentials
  std::string group_id;
  std::string custom_id;         // labels.custom_id
  boost::json::object plugins;
};

Result<std::shared_ptr<const Upstream>> parse_upstream(const boost::json::value& v, bool embedded);
Result<std::shared_ptr<const Route>> parse_route(const boost::json::value& v);
Result<std::shared_ptr<const Service>> parse_service(const boost::json::value& v);
Result<std::shared_ptr<const PluginSet>> parse_plugin_config(const boost::json::value& v);
Result<std::shared_ptr<const PluginSet>> parse_global_rule(const boost::json::value& v);
Result<std::shared_ptr<const Consumer>> parse_consumer(const boost::json::value& v);
// A credential nested under a consumer: `/consumers/<u>/credentials/<id>`.
Result<std::shared_ptr<const Consumer>> parse_credential(const boost::json::value& v,
                                                         const std::string& username,
                                                         const std::string& cred_id);

// Splits "host:port" / "[v6]:port" / "host" into parts; false if malformed.
bool split_host_port(std::string_view s, std::string& host, int& port);

// Keys of a route, service or upstream that APISIX's schema has and Holdfast
// accepts without acting on them (#11 item 9), each named with what that
// means ("upstream.checks.active.concurrency is not implemented ..."). Keys
// APISIX's schema does not have are refused by the parsers above, as APISIX
// refuses them (additionalProperties = false on every resource).
std::vector<std::string> ignored_keys(std::string_view kind, const boost::json::object& value);

}  // namespace holdfast::model
