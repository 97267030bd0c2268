// conf/config.yaml: the node's own settings (APISIX_COMPAT §6.1). Parsed and
// validated once at start-up; errors name the key path.
#pragma once
#include <boost/json/value.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/limits.h"
#include "router/ipmatch.h"

namespace holdfast {

struct ListenAddr {
  std::string ip = "0.0.0.0";
  uint16_t port = 0;
};

struct EtcdConfig {
  std::vector<std::string> hosts{"http://127.0.0.1:2379"};
  std::string prefix = "/apisix";
  double timeout = 30;          // seconds per request
  double watch_timeout = 50;    // idle seconds before a watch is re-created
  double resync_delay = 5;      // base delay before retrying after an error
  double startup_timeout = 5;   // a node waits this long for etcd at start-up
  std::string user, password;
  std::string tls_cert, tls_key, tls_ca, tls_sni;
  bool tls_verify = true;
};

struct AdminKey {
  std::string name, key, role;  // role: admin | viewer
};

struct AdminConfig {
  ListenAddr listen{"0.0.0.0", 9180};
  bool key_required = true;
  std::vector<AdminKey> keys;
  std::vector<std::string> allow{"127.0.0.0/24"};  // CIDRs
};

// deployment.fallback_cp.azure_blob.
struct AzureBlobConfig {
  std::string account_name;
  std::string account_key;   // base64 Shared Key; wins over sas_token
  std::string sas_token;     // without the leading '?'
  std::string resource_container, config_container;
  std::string endpoint;      // the blob service URL with any account path; default https://<account>.blob.core.windows.net
};

// deployment.fallback_cp.gcs (XML API).
struct GcsConfig {
  std::string resource_bucket, config_bucket;
  std::string endpoint;                     // default https://storage.googleapis.com
  std::string hmac_access_id, hmac_secret;  // HMAC keys; win over credentials_file
  std::string credentials_file;             // service-account JSON key; else GOOGLE_APPLICATION_CREDENTIALS, metadata server
};

// deployment.fallback_cp: the backup (write mode) and fallback (read) in one
// or several stores (S3, Azure Blob, GCS).
struct FallbackConfig {
  bool enabled = false;
  std::vector<std::string> stores;  // the configured stores' keys in config order (ties go to the first): aws_s3, azure_blob, gcs
  AzureBlobConfig azure;
  GcsConfig gcs;
  double interval = 60;          // seconds between backup rounds / S3 polls
  bool write = false;            // mode: write = backup node
  std::string region;
  std::string access_key, secret_key;  // optional: the AWS credential chain otherwise
  std::string resource_bucket, config_bucket;
  std::string endpoint;          // S3-compatible store (path-style)
  std::string gateway_group_id = "default";
  std::string signing_key;       // optional HMAC-SHA256 key for manifests
  std::string cache_file;        // local last-known-good; default <conf dir>/fallback-cache.json
  bool proxy = false;            // a backup node opens no proxy listener unless this is set
};

// Name resolution for upstream nodes (apisix.dns_resolver*, resolver_timeout).
struct DnsConfig {
  struct Nameserver {
    std::string ip;
    uint16_t port = 53;
  };
  std::vector<Nameserver> nameservers;  // empty: the nameservers of /etc/resolv.conf
  int valid = 0;                        // seconds; > 0 replaces the records' TTL
  double timeout = 5;                   // seconds to wait for the nameservers, per query
  bool search = true;                   // apply resolv.conf's search domains
};

// apisix.ssl: the downstream TLS listener's global settings, with APISIX's
// defaults (apisix/cli/config.lua). Certificates come from `ssls` (src/tls/).
struct SslConfig {
  bool enable = true;
  std::vector<ListenAddr> listen{{"0.0.0.0", 9443}};
  // The versions the listener offers, in APISIX's names; only "TLSv1.1",
  // "TLSv1.2" and "TLSv1.3" survive parsing (older ones are dropped with a
  // warning). An SSL object's own ssl_protocols replaces this list.
  std::vector<std::string> protocols{"TLSv1.2", "TLSv1.3"};
  // OpenSSL cipher list for TLS 1.2 and older (nginx ssl_ciphers); TLS 1.3
  // suites are OpenSSL's defaults, as in nginx.
  std::string ciphers =
      "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
      "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
      "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384";
  bool session_tickets = false;
  // Looked up when the client sends no SNI; lowercased, one trailing '.'
  // removed, as APISIX does. Empty: none (such handshakes abort).
  std::string fallback_sni;
  // "system", or CA file paths (comma-separated, "system" among them) for
  // verifying upstreams and etcd.
  std::string trusted_certificate = "system";
};

// The client address (nginx's realip module, as APISIX configures it) and
// whose X-Forwarded-* headers are believed. Matchers are built here, once,
// so a request only compares bytes.
struct ClientAddrConfig {
  std::string real_ip_header = "x-real-ip";  // lowercase
  bool real_ip_xff = false;                  // the header is X-Forwarded-For: every line, last first
  bool real_ip_recursive = false;
  router::IpMatcher real_ip_from = router::IpMatcher::loopback_v4();  // APISIX: 127.0.0.1 and unix:
  std::optional<router::IpMatcher> trusted_addresses;                // apisix.trusted_addresses; unset = none
};

// Downstream HTTP/2 (apisix.enable_http2 and holdfast.http2.*). The
// defaults are no weaker than nginx's (http2_max_concurrent_streams,
// keepalive_requests, large_client_header_buffers).
struct Http2Config {
  bool enable = true;                       // ALPN h2 on TLS listeners, h2c prior knowledge on plain ones
  uint32_t max_concurrent_streams = 128;    // SETTINGS_MAX_CONCURRENT_STREAMS
  uint32_t max_requests = 1000;             // streams per connection, then GOAWAY (keepalive_requests)
  uint32_t max_header_list_size = 32768;    // decoded request fields (name + value + 32 each); 431 above
  uint32_t hpack_table_size = 4096;         // SETTINGS_HEADER_TABLE_SIZE (our decoder's table)
  // Frames that carry no request (PING, SETTINGS, WINDOW_UPDATE, PRIORITY,
  // empty DATA) a connection may send per second, beyond a burst of 10x;
  // DATA we send earns more. Above: GOAWAY ENHANCE_YOUR_CALM.
  uint32_t control_frame_rate = 1000;
};

enum class RouterKind { radixtree_host_uri, radixtree_uri, radixtree_uri_with_parameter };

struct NodeConfig {
  std::string conf_dir;      // folder of config.yaml; apisix.yaml/json live beside it
  std::string config_path;
  std::vector<ListenAddr> node_listen{{"0.0.0.0", 9080}};
  RouterKind router = RouterKind::radixtree_host_uri;
  std::string role = "traditional";
  std::string config_provider = "etcd";
  int workers = 1;
  bool delete_uri_tail_slash = false;
  // apisix.match_uri_encoded_slash: routes match a path whose %2F stays
  // encoded, so that it sits inside one path parameter (APISIX 3.x).
  bool match_uri_encoded_slash = false;
  // apisix.max_post_args_readable_size (MiB in config.yaml): the largest
  // body read before routing for route vars post_arg_*/post_arg.*. APISIX
  // reads up to 64 MiB (0: no limit); Holdfast holds it in memory per
  // connection, so its default is 1 MiB and 0 means 64 MiB.
  uint64_t max_post_args_bytes = 1 << 20;
  // graphql.max_size: the largest POST body read as a GraphQL document.
  uint64_t graphql_max_size = 1 << 20;
  std::vector<std::string> plugins;  // enabled plugins; empty = every built-in plugin

  // logging
  std::string log_level = "info";
  bool log_json = false;
  std::string access_log;   // file path; "" = off, "stderr"/"stdout" allowed

  // downstream limits and timeouts (seconds)
  HttpLimits limits;
  double client_header_timeout = 60;
  double client_body_timeout = 60;
  double send_timeout = 10;           // APISIX's default (nginx_config.http.send_timeout)
  double keepalive_timeout = 60;
  double shutdown_timeout = 10;  // drain deadline on SIGTERM/SIGINT
  // Open client connections per worker (nginx_config.event.worker_connections;
  // nginx also counts upstream connections, Holdfast counts client ones).
  int worker_connections = 10620;
  int rlimit_nofile = 0;  // nginx_config.worker_rlimit_nofile; 0 = the hard limit

  // status endpoint (apisix.status {ip, port}); port 0 = off
  ListenAddr status_listen{"127.0.0.1", 0};

  ClientAddrConfig client_addr;
  SslConfig ssl;
  Http2Config http2;
  // Where the redirect plugin's http_to_https sends: plugin_attr.redirect.https_port,
  // else the first apisix.ssl.listen port when TLS is enabled, else 0 (no
  // port in the Location). 443 is left out of the Location.
  uint16_t redirect_https_port = 0;
  // plugin_attr.prometheus: where the export server listens (when the
  // prometheus plugin is enabled and the node proxies) and how it names things.
  struct Prometheus {
    bool export_server = true;  // enable_export_server
    ListenAddr export_addr{"127.0.0.1", 9091};
    std::string export_uri = "/apisix/prometheus/metrics";
    std::string metric_prefix = "apisix_";
    std::vector<double> default_buckets;  // empty: APISIX's (1 ms .. 60 s)
  } prometheus;
  EtcdConfig etcd;
  AdminConfig admin;
  FallbackConfig fallback;
  DnsConfig dns;
  // data encryption (apisix.data_encryption)
  bool encrypt_fields = true;
  std::vector<std::string> keyring{"qeddd145sfvddff3", "edd1c9f0985e76a2"};

  // nginx_config.http.lua_shared_dict: every APISIX dict name with its size in
  // bytes (APISIX's defaults, overridden by config.yaml). Holdfast's keyed
  // stores (plugins/shared_dict.h) take their capacity from here.
  std::map<std::string, uint64_t> lua_shared_dict;

  boost::json::value raw;    // the whole document, for later consumers (etcd, fallback_cp)
  std::vector<std::string> warnings;

  std::string standalone_path() const;
};

// Parses config.yaml text (after ${{ENV}} substitution). `conf_dir` is where
// the standalone file is looked up.
Result<NodeConfig> parse_node_config(std::string_view text, const std::string& conf_dir);
Result<NodeConfig> load_node_config(const std::string& path);

}  // namespace holdfast
