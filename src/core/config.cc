#include "core/config.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <boost/asio/ip/address.hpp>

#include <algorithm>

#include "core/base64.h"
#include "core/budgets.h"
#include "core/log.h"
#include "core/yaml_json.h"

namespace holdfast {
namespace json = boost::json;
namespace {

// Keys, passwords and other secrets may be made only of digits: from
// ${{ENV}} they then arrive as integers (APISIX types substituted values),
// and their text is taken back exactly (resolve_env only types an integer
// whose text round-trips, so "007" stays a string).
std::optional<std::string> secret_text(const json::value& v) {
  if (v.is_string()) return std::string(v.as_string());
  if (v.is_int64() || v.is_uint64()) return json::serialize(v);
  return std::nullopt;
}

// Keys we know. A key mapped to "*" accepts any sub-keys (sections owned by
// later features or passed through untouched), so they are not warned about.
const std::set<std::string>& known_keys() {
  static const std::set<std::string> k = {
      "apisix", "apisix.node_listen", "apisix.router", "apisix.router.http", "apisix.router.ssl",
      "apisix.enable_admin", "apisix.enable_http2", "apisix.proxy_mode",
      // apisix.ssl: parse_ssl warns about the keys APISIX has and Holdfast
      // does not support (ssl_cert, ssl_cert_key, key_encrypt_salt).
      "apisix.ssl", "apisix.ssl.enable", "apisix.ssl.listen", "apisix.ssl.ssl_protocols",
      "apisix.ssl.ssl_ciphers", "apisix.ssl.ssl_session_tickets", "apisix.ssl.fallback_sni",
      "apisix.ssl.ssl_trusted_certificate", "apisix.ssl.ssl_cert", "apisix.ssl.ssl_cert_key",
      "apisix.ssl.key_encrypt_salt",
      "apisix.delete_uri_tail_slash", "apisix.match_uri_encoded_slash", "apisix.max_post_args_readable_size", "apisix.data_encryption*", "apisix.enable_ipv6",
      "apisix.show_upstream_status_in_response_header", "apisix.normalize_uri_like_servlet",
      "apisix.extra_lua_path", "apisix.extra_lua_cpath", "apisix.enable_control", "apisix.control*",
      "apisix.id", "apisix.enable_server_tokens", "apisix.enable_reuseport", "apisix.proxy_cache*",
      "apisix.status*", "apisix.client_max_body_size", "apisix.stream_proxy*", "apisix.dns_resolver",
      "apisix.dns_resolver_valid", "apisix.resolver_timeout", "apisix.enable_resolv_search_opt",
      "nginx_config", "nginx_config.worker_processes", "nginx_config.error_log_level",
      "nginx_config.error_log", "nginx_config.http", "nginx_config.http.client_header_timeout",
      "nginx_config.http.client_body_timeout", "nginx_config.http.send_timeout",
      "nginx_config.http.keepalive_timeout", "nginx_config.http.client_max_body_size",
      "nginx_config.http.lua_shared_dict*", "nginx_config.http.real_ip_header", "nginx_config.http.real_ip_from",
      "nginx_config.http.real_ip_recursive", "apisix.trusted_addresses",
      "nginx_config.event", "nginx_config.event.worker_connections",
      "nginx_config.worker_rlimit_nofile", "nginx_config.worker_shutdown_timeout",
      "nginx_config.enable_cpu_affinity", "nginx_config.user", "nginx_config.main_configuration_snippet",
      "nginx_config.meta*", "nginx_config.stream*",
      "deployment", "deployment.role", "deployment.role_traditional*", "deployment.role_data_plane*",
      "deployment.role_control_plane*", "deployment.admin*", "deployment.etcd*",
      "deployment.fallback_cp*", "deployment.config_provider",
      "plugins", "stream_plugins", "plugin_attr*", "discovery*", "wasm*", "graphql", "graphql.max_size", "ext-plugin*",
      "xrpc*", "holdfast", "holdfast.client_header_timeout", "holdfast.client_body_timeout",
      "holdfast.send_timeout", "holdfast.keepalive_timeout", "holdfast.shutdown_timeout",
      "holdfast.max_header_size", "holdfast.max_uri_size", "holdfast.max_body_size", "holdfast.log_format",
      "holdfast.access_log", "holdfast.http2", "holdfast.http2.max_concurrent_streams",
      "holdfast.http2.max_requests", "holdfast.http2.max_header_list_size", "holdfast.http2.hpack_table_size",
      "holdfast.http2.control_frame_rate"};
  return k;
}

bool is_known(const std::string& path) {
  const auto& k = known_keys();
  if (k.count(path)) return true;
  // a "*" entry matching this path or one of its parents
  std::string p = path;
  while (true) {
    if (k.count(p + "*")) return true;
    auto dot = p.rfind('.');
    if (dot == std::string::npos) return false;
    p.resize(dot);
  }
}

void collect_unknown(const json::value& v, const std::string& path, std::vector<std::string>& out) {
  if (!v.is_object()) return;
  for (const auto& kv : v.as_object()) {
    std::string p = path.empty() ? std::string(kv.key()) : path + "." + std::string(kv.key());
    if (!is_known(p)) {
      out.push_back(fmt::format("unknown key {} (ignored)", p));
      continue;
    }
    collect_unknown(kv.value(), p, out);
  }
}

// Keys APISIX has and Holdfast does not implement. A value that asks for
// what Holdfast does anyway passes without a word; any other is named in a
// warning (start-up and `holdfast -t`), so that nothing is ignored silently.
struct Unsupported {
  const char* key;   // dotted path
  const char* why;   // what Holdfast does instead
  bool (*harmless)(const json::value&);
};

bool is_false(const json::value& v) { return v.is_bool() && !v.as_bool(); }
bool is_true(const json::value& v) { return v.is_bool() && v.as_bool(); }
bool is_empty(const json::value& v) {
  return v.is_null() || (v.is_string() && v.as_string().empty()) || (v.is_array() && v.as_array().empty()) ||
         (v.is_object() && v.as_object().empty());
}
bool is_http(const json::value& v) { return v.is_string() && v.as_string() == "http"; }

constexpr Unsupported kUnsupported[] = {
    {"apisix.proxy_mode", "only HTTP proxying (\"http\") is implemented", is_http},
    {"apisix.enable_ipv6", "listeners are only those node_listen and apisix.ssl.listen name", is_false},
    {"apisix.show_upstream_status_in_response_header", "the X-APISIX-Upstream-Status header is not sent", is_false},
    {"apisix.normalize_uri_like_servlet", "paths are normalised as nginx does only", is_false},
    {"apisix.extra_lua_path", "Holdfast runs no Lua", is_empty},
    {"apisix.extra_lua_cpath", "Holdfast runs no Lua", is_empty},
    {"apisix.enable_control", "APISIX's control API is not implemented", is_false},
    {"apisix.control", "APISIX's control API is not implemented", is_empty},
    {"apisix.enable_admin", "the Admin API runs by deployment.role", is_true},
    {"apisix.enable_reuseport", "listeners always use SO_REUSEPORT", is_true},
    {"apisix.proxy_cache", "proxy-cache is not implemented", is_empty},
    {"apisix.stream_proxy", "stream (L4) proxying is not implemented", is_empty},
    {"apisix.id", "the instance id is not used", is_empty},
    {"nginx_config.worker_shutdown_timeout", "use holdfast.shutdown_timeout", is_empty},
    {"nginx_config.enable_cpu_affinity", "workers are not pinned to CPUs", is_false},
    {"nginx_config.user", "Holdfast runs as the user that starts it", is_empty},
    {"nginx_config.main_configuration_snippet", "there is no nginx configuration", is_empty},
    {"nginx_config.meta", "there is no nginx configuration", is_empty},
    {"nginx_config.stream", "stream (L4) proxying is not implemented", is_empty},
    {"stream_plugins", "stream (L4) proxying is not implemented", is_empty},
    {"discovery", "service discovery is not implemented; upstream nodes come from the configuration", is_empty},
    {"wasm", "Wasm plugins are not implemented", is_empty},
    {"ext-plugin", "external plugin runners are not implemented", is_empty},
    {"xrpc", "xRPC is not implemented", is_empty},
};


void collect_unsupported(const json::value& root, std::vector<std::string>& out) {
  for (const auto& u : kUnsupported) {
    const json::value* cur = &root;
    std::string_view rest = u.key;
    while (cur && !rest.empty()) {
      const size_t dot = rest.find('.');
      const auto* o = cur->if_object();
      cur = o ? o->if_contains(rest.substr(0, dot)) : nullptr;
      rest = dot == std::string_view::npos ? std::string_view{} : rest.substr(dot + 1);
    }
    if (cur && !u.harmless(*cur)) out.push_back(fmt::format("{}: not supported (ignored): {}", u.key, u.why));
  }
}

const json::value* at(const json::value& root, std::initializer_list<const char*> path) {
  const json::value* cur = &root;
  for (const char* k : path) {
    if (!cur->is_object()) return nullptr;
    auto it = cur->as_object().find(k);
    if (it == cur->as_object().end()) return nullptr;
    cur = &it->value();
  }
  return cur->is_null() ? nullptr : cur;
}

Result<double> number(const json::value& v, const std::string& key, double min_exclusive) {
  double d;
  if (v.is_int64()) d = static_cast<double>(v.as_int64());
  else if (v.is_uint64()) d = static_cast<double>(v.as_uint64());
  else if (v.is_double()) d = v.as_double();
  else return Error{fmt::format("{}: expected a number, got {}", key, json::serialize(v))};
  if (!(d > min_exclusive)) return Error{fmt::format("{}: must be greater than {}", key, min_exclusive)};
  return d;
}

// nginx time ("60s", "1m30s", "500ms", "2h", a bare number = seconds) in seconds.
Result<double> nginx_time(const json::value& v, const std::string& key) {
  if (v.is_int64() || v.is_uint64() || v.is_double()) return number(v, key, -1);
  if (!v.is_string()) return Error{fmt::format("{}: expected a time such as 60s, got {}", key, json::serialize(v))};
  std::string_view s = v.as_string();
  double total = 0;
  size_t i = 0;
  if (s.empty()) return Error{key + ": expected a time such as 60s, got \"\""};
  while (i < s.size()) {
    size_t start = i;
    double n = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') n = n * 10 + (s[i++] - '0');
    if (i == start || n > 1e9) return Error{fmt::format("{}: invalid time {}", key, json::serialize(v))};
    size_t us = i;
    while (i < s.size() && s[i] >= 'a' && s[i] <= 'z') ++i;
    std::string_view unit = s.substr(us, i - us);
    double mult;
    if (unit.empty() || unit == "s") mult = 1;
    else if (unit == "ms") mult = 0.001;
    else if (unit == "m") mult = 60;
    else if (unit == "h") mult = 3600;
    else if (unit == "d") mult = 86400;
    else if (unit == "w") mult = 7 * 86400;
    else return Error{fmt::format("{}: invalid time {}", key, json::serialize(v))};
    total += n * mult;
    if (unit.empty() && i < s.size()) return Error{fmt::format("{}: invalid time {}", key, json::serialize(v))};
  }
  return total;
}

// A size as nginx's ngx_parse_size reads it: digits, then an optional k, m or
// g (either case) for KiB, MiB, GiB. Nothing else: no sign, spaces or fraction.
std::optional<uint64_t> nginx_size(std::string_view s) {
  uint64_t scale = 1;
  if (!s.empty()) {
    switch (s.back()) {
      case 'k': case 'K': scale = uint64_t{1} << 10; s.remove_suffix(1); break;
      case 'm': case 'M': scale = uint64_t{1} << 20; s.remove_suffix(1); break;
      case 'g': case 'G': scale = uint64_t{1} << 30; s.remove_suffix(1); break;
      default: break;
    }
  }
  if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
  const uint64_t n = std::stoull(std::string(s));  // 18 digits fit
  if (n > UINT64_MAX / scale) return std::nullopt;
  return n * scale;
}

// The same for a config.yaml value: a size string or a bare byte count.
Result<uint64_t> nginx_size(const json::value& v, const std::string& key) {
  if (v.is_int64() && v.as_int64() >= 0) return static_cast<uint64_t>(v.as_int64());
  if (v.is_uint64()) return v.as_uint64();
  std::optional<uint64_t> n;
  if (v.is_string()) n = nginx_size(std::string_view(v.as_string()));
  if (!n) return Error{fmt::format("{}: invalid size {} (bytes, or a number with k, m or g)", key, json::serialize(v))};
  return *n;
}

Result<uint16_t> port(const json::value& v, const std::string& key) {
  if (!v.is_int64() || v.as_int64() < 1 || v.as_int64() > 65535)
    return Error{fmt::format("{}: expected a port number 1-65535, got {}", key, json::serialize(v))};
  return static_cast<uint16_t>(v.as_int64());
}

Status parse_listen(const json::value& v, std::vector<ListenAddr>& out) {
  const std::string key = "apisix.node_listen";
  out.clear();
  if (v.is_int64()) {
    auto p = port(v, key);
    if (!p) return Error{p.error()};
    out.push_back({"0.0.0.0", *p});
    return {};
  }
  if (!v.is_array() || v.as_array().empty())
    return Error{key + ": expected a port, a list of ports or a list of {ip, port}"};
  size_t i = 0;
  for (const auto& item : v.as_array()) {
    std::string k = fmt::format("{}[{}]", key, i++);
    if (item.is_int64()) {
      auto p = port(item, k);
      if (!p) return Error{p.error()};
      out.push_back({"0.0.0.0", *p});
    } else if (item.is_object()) {
      ListenAddr a;
      auto pi = item.as_object().find("port");
      if (pi == item.as_object().end()) return Error{k + ".port: required"};
      auto p = port(pi->value(), k + ".port");
      if (!p) return Error{p.error()};
      a.port = *p;
      if (auto ip = item.as_object().find("ip"); ip != item.as_object().end()) {
        if (!ip->value().is_string()) return Error{k + ".ip: expected a string"};
        a.ip = std::string(ip->value().as_string());
      }
      out.push_back(a);
    } else {
      return Error{k + ": expected a port or {ip, port}"};
    }
  }
  return {};
}

Result<std::string> string_at(const json::value& root, std::initializer_list<const char*> path,
                              const std::string& key) {
  const json::value* v = at(root, path);
  if (!v) return std::string();
  if (!v->is_string()) return Error{fmt::format("{}: expected a string, got {}", key, json::serialize(*v))};
  return std::string(v->as_string());
}

Status parse_etcd(const json::value& r, EtcdConfig& e) {
  // APISIX verifies etcd against apisix.ssl.ssl_trusted_certificate (paths,
  // comma-separated, "system" = the system store); tls.ca is Holdfast's own
  // key and wins when both are set.
  auto apisix_ca = [&]() -> Status {
    if (!e.tls_ca.empty()) return {};
    auto ca = string_at(r, {"apisix", "ssl", "ssl_trusted_certificate"}, "apisix.ssl.ssl_trusted_certificate");
    if (!ca) return Error{ca.error()};
    e.tls_ca = *ca;
    return {};
  };
  const json::value* v = at(r, {"deployment", "etcd"});
  if (!v) return apisix_ca();
  if (!v->is_object()) return Error{"deployment.etcd: expected a mapping"};
  const auto& o = v->as_object();
  if (auto h = o.find("host"); h != o.end()) {
    if (!h->value().is_array() || h->value().as_array().empty())
      return Error{"deployment.etcd.host: expected a non-empty list of http(s):// URLs"};
    e.hosts.clear();
    size_t i = 0;
    for (const auto& x : h->value().as_array()) {
      if (!x.is_string() || (std::string_view(x.as_string()).substr(0, 7) != "http://" && std::string_view(x.as_string()).substr(0, 8) != "https://"))
        return Error{fmt::format("deployment.etcd.host[{}]: must match ^https?://, got {}", i, json::serialize(x))};
      e.hosts.emplace_back(x.as_string());
      ++i;
    }
  }
  auto str = [&](const char* key, std::string& dst, const char* path) -> Status {
    if (auto it = o.find(key); it != o.end() && !it->value().is_null()) {
      auto text = secret_text(it->value());
      if (!text) return Error{std::string(path) + ": expected a string"};
      dst = std::move(*text);
    }
    return {};
  };
  auto num = [&](const char* key, double& dst, const char* path) -> Status {
    if (auto it = o.find(key); it != o.end()) {
      auto n = number(it->value(), path, 0);
      if (!n) return Error{n.error()};
      dst = *n;
    }
    return {};
  };
  for (auto st : {str("prefix", e.prefix, "deployment.etcd.prefix"), str("user", e.user, "deployment.etcd.user"),
                  str("password", e.password, "deployment.etcd.password"),
                  num("timeout", e.timeout, "deployment.etcd.timeout"),
                  num("watch_timeout", e.watch_timeout, "deployment.etcd.watch_timeout"),
                  num("resync_delay", e.resync_delay, "deployment.etcd.resync_delay"),
                  num("startup_timeout", e.startup_timeout, "deployment.etcd.startup_timeout")})
    if (!st) return st;
  if (e.prefix.empty() || e.prefix[0] != '/') return Error{"deployment.etcd.prefix: must start with /"};
  while (e.prefix.size() > 1 && e.prefix.back() == '/') e.prefix.pop_back();
  if (auto t = o.find("tls"); t != o.end() && !t->value().is_null()) {
    if (!t->value().is_object()) return Error{"deployment.etcd.tls: expected a mapping"};
    const auto& to = t->value().as_object();
    auto tstr = [&](const char* key, std::string& dst) -> Status {
      if (auto it = to.find(key); it != to.end()) {
        if (!it->value().is_string()) return Error{std::string("deployment.etcd.tls.") + key + ": expected a string"};
        dst = std::string(it->value().as_string());
      }
      return {};
    };
    for (auto st : {tstr("cert", e.tls_cert), tstr("key", e.tls_key), tstr("sni", e.tls_sni), tstr("ca", e.tls_ca)})
      if (!st) return st;
    if (auto it = to.find("verify"); it != to.end()) {
      if (!it->value().is_bool()) return Error{"deployment.etcd.tls.verify: expected a boolean"};
      e.tls_verify = it->value().as_bool();
    }
    if (e.tls_cert.empty() != e.tls_key.empty()) return Error{"deployment.etcd.tls: cert and key go together"};
  }
  return apisix_ca();
}

// A container name as Azure accepts it: 3-63 of a-z, 0-9 and single
// hyphens, starting and ending with a letter or digit.
bool azure_container_name(const std::string& n) {
  if (n.size() < 3 || n.size() > 63 || n.front() == '-' || n.back() == '-') return false;
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    if (c == '-' && n[i + 1] == '-') return false;
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

// deployment.fallback_cp.azure_blob. Unknown keys only warn: API7's own
// values carry keys Holdfast has no use for.
Status parse_azure_blob(const json::object& ao, AzureBlobConfig& a, std::vector<std::string>& warnings) {
  static const std::set<std::string> keys = {"account_name", "account_key", "sas_token", "config_container",
                                             "resource_container", "endpoint"};
  for (const auto& kv : ao)
    if (!keys.count(std::string(kv.key())))
      warnings.push_back(fmt::format("unknown key deployment.fallback_cp.azure_blob.{} (ignored; known: account_name, "
                                     "account_key, sas_token, config_container, resource_container, endpoint)",
                                     log::json_escape(std::string(kv.key()))));
  // Secrets may be made only of digits (${{ENV}} types them): take their text.
  auto str = [&](const char* key, std::string& dst) -> Status {
    if (auto it = ao.find(key); it != ao.end() && !it->value().is_null()) {
      auto text = secret_text(it->value());
      if (!text) return Error{std::string("deployment.fallback_cp.azure_blob.") + key + ": expected a string"};
      dst = std::move(*text);
    }
    return {};
  };
  for (auto st : {str("account_name", a.account_name), str("account_key", a.account_key), str("sas_token", a.sas_token),
                  str("config_container", a.config_container), str("resource_container", a.resource_container),
                  str("endpoint", a.endpoint)})
    if (!st) return st;
  // The account name goes into the host name and every signature.
  if (a.account_name.size() < 3 || a.account_name.size() > 24 ||
      !std::all_of(a.account_name.begin(), a.account_name.end(),
                   [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }))
    return Error{"deployment.fallback_cp.azure_blob.account_name: required, 3-24 lowercase letters and digits"};
  for (auto [name, value] : {std::pair<const char*, const std::string*>{"resource_container", &a.resource_container},
                             {"config_container", &a.config_container}}) {
    if (value->empty()) return Error{fmt::format("deployment.fallback_cp.azure_blob.{}: required", name)};
    if (!azure_container_name(*value))
      return Error{fmt::format("deployment.fallback_cp.azure_blob.{}: \"{}\" is not a container name (3-63 of a-z, 0-9 "
                               "and single hyphens, starting and ending with a letter or digit)",
                               name, log::json_escape(*value))};
  }
  // Never echo a key or token in an error.
  if (!a.account_key.empty()) {
    auto raw = base64_decode(a.account_key);
    if (!raw || raw->empty()) return Error{"deployment.fallback_cp.azure_blob.account_key: not a base64 account key"};
  }
  if (!a.sas_token.empty() && a.sas_token.front() == '?') a.sas_token.erase(0, 1);
  if (!a.sas_token.empty()) {
    // It is appended to every request target as it is: only URL query characters.
    const bool clean = std::all_of(a.sas_token.begin(), a.sas_token.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             std::string_view("-._~%&=+/:,!$'()*;@").find(c) != std::string_view::npos;
    });
    if (!clean) return Error{"deployment.fallback_cp.azure_blob.sas_token: not a URL query string (a character outside "
                             "the query's set)"};
  }
  // Neither: Entra ID tokens from Azure Workload Identity or managed
  // identity (cloud/azure/identity.h), found at run time.
  const bool bearer = a.account_key.empty() && a.sas_token.empty();
  if (!a.account_key.empty() && !a.sas_token.empty())
    warnings.push_back("deployment.fallback_cp.azure_blob.sas_token is ignored: account_key is set and comes first");
  if (a.endpoint.empty()) a.endpoint = "https://" + a.account_name + ".blob.core.windows.net";
  if (a.endpoint.rfind("http://", 0) != 0 && a.endpoint.rfind("https://", 0) != 0)
    return Error{"deployment.fallback_cp.azure_blob.endpoint: must be an http:// or https:// URL"};
  if (bearer && a.endpoint.rfind("http://", 0) == 0)
    warnings.push_back("deployment.fallback_cp.azure_blob.endpoint is http://: Entra ID bearer tokens (workload or "
                       "managed identity) would cross the network in the clear, and Azure refuses them there");
  while (a.endpoint.back() == '/') a.endpoint.pop_back();
  return {};
}

// A bucket name as GCS accepts it: 3-63 of a-z, 0-9, '-', '_' and '.'
// (up to 222 with dots, each part at most 63), starting and ending with a
// letter or digit.
bool gcs_bucket_name(const std::string& n) {
  const bool dotted = n.find('.') != std::string::npos;
  if (n.size() < 3 || n.size() > (dotted ? 222u : 63u)) return false;
  if (!std::isalnum(static_cast<unsigned char>(n.front())) || !std::isalnum(static_cast<unsigned char>(n.back())))
    return false;
  size_t part = 0;
  for (char c : n) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.')) return false;
    part = c == '.' ? 0 : part + 1;
    if (part > 63) return false;
  }
  return true;
}

// deployment.fallback_cp.gcs. Unknown keys only warn, as for azure_blob.
Status parse_gcs(const json::object& go, GcsConfig& g, std::vector<std::string>& warnings) {
  static const std::set<std::string> keys = {"resource_bucket", "config_bucket", "endpoint",
                                             "hmac_access_id", "hmac_secret", "credentials_file"};
  for (const auto& kv : go)
    if (!keys.count(std::string(kv.key())))
      warnings.push_back(fmt::format("unknown key deployment.fallback_cp.gcs.{} (ignored; known: resource_bucket, "
                                     "config_bucket, endpoint, hmac_access_id, hmac_secret, credentials_file)",
                                     log::json_escape(std::string(kv.key()))));
  auto str = [&](const char* key, std::string& dst) -> Status {
    if (auto it = go.find(key); it != go.end() && !it->value().is_null()) {
      auto text = secret_text(it->value());
      if (!text) return Error{std::string("deployment.fallback_cp.gcs.") + key + ": expected a string"};
      dst = std::move(*text);
    }
    return {};
  };
  for (auto st : {str("resource_bucket", g.resource_bucket), str("config_bucket", g.config_bucket),
                  str("endpoint", g.endpoint), str("hmac_access_id", g.hmac_access_id),
                  str("hmac_secret", g.hmac_secret), str("credentials_file", g.credentials_file)})
    if (!st) return st;
  for (auto [name, value] : {std::pair<const char*, const std::string*>{"resource_bucket", &g.resource_bucket},
                             {"config_bucket", &g.config_bucket}}) {
    if (value->empty()) return Error{fmt::format("deployment.fallback_cp.gcs.{}: required", name)};
    if (!gcs_bucket_name(*value))
      return Error{fmt::format("deployment.fallback_cp.gcs.{}: \"{}\" is not a bucket name (3-63 of a-z, 0-9, '-', "
                               "'_' and '.', starting and ending with a letter or digit)",
                               name, log::json_escape(*value))};
  }
  // Never echo the secret in an error. The access id goes into every
  // Authorization header: only printable characters without spaces.
  if (g.hmac_access_id.empty() != g.hmac_secret.empty())
    return Error{g.hmac_access_id.empty() ? "deployment.fallback_cp.gcs.hmac_access_id: required when hmac_secret is set"
                                          : "deployment.fallback_cp.gcs.hmac_secret: required when hmac_access_id is set"};
  // The id sits in the Credential= field, where '/' and ',' are separators.
  for (auto [name, value] : {std::pair<const char*, const std::string*>{"hmac_access_id", &g.hmac_access_id},
                             {"hmac_secret", &g.hmac_secret}})
    for (char c : *value)
      if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || (value == &g.hmac_access_id && (c == ',' || c == '/')))
        return Error{fmt::format("deployment.fallback_cp.gcs.{}: a character HMAC keys do not have", name)};
  if (!g.hmac_access_id.empty() && !g.credentials_file.empty())
    warnings.push_back("deployment.fallback_cp.gcs.credentials_file is ignored: the HMAC key is set and comes first");
  if (g.endpoint.empty()) g.endpoint = "https://storage.googleapis.com";
  if (g.endpoint.rfind("http://", 0) != 0 && g.endpoint.rfind("https://", 0) != 0)
    return Error{"deployment.fallback_cp.gcs.endpoint: must be an http:// or https:// URL"};
  if (g.hmac_access_id.empty() && g.endpoint.rfind("http://", 0) == 0)
    warnings.push_back("deployment.fallback_cp.gcs.endpoint is http://: OAuth2 bearer tokens (service account or "
                       "metadata server) would cross the network in the clear");
  while (g.endpoint.back() == '/') g.endpoint.pop_back();
  return {};
}

// Keys and secrets may be made only of digits (and arrive as numbers from
// ${{ENV}} substitution): take their text.
Status fallback_text(const json::object& obj, const char* key, std::string& dst, const std::string& path) {
  if (auto it = obj.find(key); it != obj.end() && !it->value().is_null()) {
    const auto& v = it->value();
    if (v.is_string()) dst = std::string(v.as_string());
    else if (v.is_int64() || v.is_uint64() || v.is_bool()) dst = json::serialize(v);
    else return Error{path + ": expected a string"};
  }
  return {};
}

// deployment.fallback_cp.aws_s3.
Status parse_aws_s3(const json::object& so, FallbackConfig& f) {
  static const std::set<std::string> s3keys = {"region", "access_key", "secret_key", "resource_bucket",
                                               "config_bucket", "endpoint"};
  for (const auto& kv : so)
    if (!s3keys.count(std::string(kv.key())))
      return Error{fmt::format("deployment.fallback_cp.aws_s3.{}: unknown key (known: region, access_key, secret_key, "
                               "resource_bucket, config_bucket, endpoint)", std::string(kv.key()))};
  for (auto st : {fallback_text(so, "region", f.region, "deployment.fallback_cp.aws_s3.region"),
                  fallback_text(so, "access_key", f.access_key, "deployment.fallback_cp.aws_s3.access_key"),
                  fallback_text(so, "secret_key", f.secret_key, "deployment.fallback_cp.aws_s3.secret_key"),
                  fallback_text(so, "resource_bucket", f.resource_bucket, "deployment.fallback_cp.aws_s3.resource_bucket"),
                  fallback_text(so, "config_bucket", f.config_bucket, "deployment.fallback_cp.aws_s3.config_bucket"),
                  fallback_text(so, "endpoint", f.endpoint, "deployment.fallback_cp.aws_s3.endpoint")})
    if (!st) return st;
  if (f.resource_bucket.empty()) return Error{"deployment.fallback_cp.aws_s3.resource_bucket: required"};
  if (f.config_bucket.empty()) return Error{"deployment.fallback_cp.aws_s3.config_bucket: required"};
  if (f.access_key.empty() != f.secret_key.empty())
    return Error{f.access_key.empty() ? "deployment.fallback_cp.aws_s3.access_key: required when secret_key is set"
                                      : "deployment.fallback_cp.aws_s3.secret_key: required when access_key is set"};
  if (f.region.empty()) {
    const char* env_region = std::getenv("AWS_REGION");
    if (!env_region || !*env_region) env_region = std::getenv("AWS_DEFAULT_REGION");
    f.region = env_region && *env_region ? env_region : "us-east-1";
  }
  if (!f.endpoint.empty() && f.endpoint.rfind("http://", 0) != 0 && f.endpoint.rfind("https://", 0) != 0)
    return Error{"deployment.fallback_cp.aws_s3.endpoint: must be an http:// or https:// URL"};
  return {};
}

Status parse_fallback(const json::value& r, FallbackConfig& f, const std::string& conf_dir,
                      std::vector<std::string>& warnings) {
  const json::value* v = at(r, {"deployment", "fallback_cp"});
  f.cache_file = conf_dir + "/fallback-cache.json";
  if (const char* gid = std::getenv("HOLDFAST_GATEWAY_GROUP_ID"); gid && *gid) f.gateway_group_id = gid;
  if (!v) return {};
  if (!v->is_object()) return Error{"deployment.fallback_cp: expected a mapping"};
  const auto& o = v->as_object();
  static const std::set<std::string> keys = {"interval", "mode", "aws_s3", "azure_blob", "gcs", "gateway_group_id",
                                             "signing_key", "cache_file", "proxy"};
  for (const auto& kv : o)
    if (!keys.count(std::string(kv.key())))
      return Error{fmt::format("deployment.fallback_cp.{}: unknown key (known: interval, mode, aws_s3, azure_blob, gcs, "
                               "gateway_group_id, signing_key, cache_file, proxy)", std::string(kv.key()))};
  f.enabled = true;
  if (auto it = o.find("interval"); it != o.end()) {
    const auto& iv = it->value();
    if (!iv.is_int64() || iv.as_int64() < 1)
      return Error{"deployment.fallback_cp.interval: expected a whole number of seconds >= 1, got " + json::serialize(iv)};
    f.interval = static_cast<double>(iv.as_int64());
  }
  if (auto it = o.find("mode"); it != o.end() && !it->value().is_null()) {
    if (!it->value().is_string() || (it->value().as_string() != "write" && it->value().as_string() != "read"))
      return Error{"deployment.fallback_cp.mode: expected \"write\" (backup node) or omitted (traffic node), got " +
                   json::serialize(it->value())};
    f.write = it->value().as_string() == "write";
  }
  for (auto st : {fallback_text(o, "gateway_group_id", f.gateway_group_id, "deployment.fallback_cp.gateway_group_id"),
                  fallback_text(o, "signing_key", f.signing_key, "deployment.fallback_cp.signing_key"),
                  fallback_text(o, "cache_file", f.cache_file, "deployment.fallback_cp.cache_file")})
    if (!st) return st;
  if (auto it = o.find("proxy"); it != o.end()) {
    if (!it->value().is_bool()) return Error{"deployment.fallback_cp.proxy: expected a boolean"};
    f.proxy = it->value().as_bool();
  }
  if (f.gateway_group_id.empty() || f.gateway_group_id.find('/') != std::string::npos)
    return Error{"deployment.fallback_cp.gateway_group_id: must be non-empty and contain no '/'"};
  // Every store set is used; their order in the document breaks ties between
  // equal revisions on traffic nodes.
  for (const auto& kv : o) {
    const std::string key(kv.key());
    if ((key != "aws_s3" && key != "azure_blob" && key != "gcs") || kv.value().is_null()) continue;
    if (!kv.value().is_object()) return Error{"deployment.fallback_cp." + key + ": expected a mapping"};
    f.stores.push_back(key);
    const auto& so = kv.value().as_object();
    auto st = key == "aws_s3" ? parse_aws_s3(so, f) : key == "gcs" ? parse_gcs(so, f.gcs, warnings)
                                                                   : parse_azure_blob(so, f.azure, warnings);
    if (!st) return st;
  }
  if (f.stores.empty()) return Error{"deployment.fallback_cp.aws_s3: required (a mapping), or azure_blob or gcs"};
  if (f.stores.size() > 1 && f.signing_key.empty())
    warnings.push_back(fmt::format(
        "deployment.fallback_cp: {} stores without signing_key: traffic nodes take the highest revision from any of "
        "them, so anyone who can write one store can override the others; set signing_key",
        f.stores.size()));
  return {};
}

Status parse_admin(const json::value& r, AdminConfig& a) {
  const json::value* v = at(r, {"deployment", "admin"});
  if (!v) return {};
  if (!v->is_object()) return Error{"deployment.admin: expected a mapping"};
  const auto& o = v->as_object();
  if (auto it = o.find("admin_listen"); it != o.end()) {
    if (!it->value().is_object()) return Error{"deployment.admin.admin_listen: expected {ip, port}"};
    const auto& lo = it->value().as_object();
    if (auto ip = lo.find("ip"); ip != lo.end()) {
      if (!ip->value().is_string()) return Error{"deployment.admin.admin_listen.ip: expected a string"};
      a.listen.ip = std::string(ip->value().as_string());
    }
    if (auto p = lo.find("port"); p != lo.end()) {
      auto pr = port(p->value(), "deployment.admin.admin_listen.port");
      if (!pr) return Error{pr.error()};
      a.listen.port = *pr;
    }
  }
  if (auto it = o.find("admin_key_required"); it != o.end()) {
    if (!it->value().is_bool()) return Error{"deployment.admin.admin_key_required: expected a boolean"};
    a.key_required = it->value().as_bool();
  }
  if (auto it = o.find("admin_key"); it != o.end() && !it->value().is_null()) {
    if (!it->value().is_array()) return Error{"deployment.admin.admin_key: expected a list of {name, key, role}"};
    size_t i = 0;
    for (const auto& k : it->value().as_array()) {
      std::string path = fmt::format("deployment.admin.admin_key[{}]", i++);
      if (!k.is_object()) return Error{path + ": expected {name, key, role}"};
      const auto& ko = k.as_object();
      AdminKey key;
      auto get = [&](const char* f) -> std::string {
        auto x = ko.find(f);
        return x != ko.end() ? secret_text(x->value()).value_or("") : std::string();
      };
      key.name = get("name");
      key.key = get("key");
      key.role = get("role");
      if (key.role != "admin" && key.role != "viewer") return Error{path + ".role: must be admin or viewer"};
      if (key.key.empty()) return Error{path + ".key: must not be empty (APISIX would generate one; set it explicitly)"};
      a.keys.push_back(key);
    }
  }
  if (auto it = o.find("allow_admin"); it != o.end() && !it->value().is_null()) {
    if (!it->value().is_array()) return Error{"deployment.admin.allow_admin: expected a list of CIDRs"};
    a.allow.clear();
    for (const auto& x : it->value().as_array()) {
      if (!x.is_string()) return Error{"deployment.admin.allow_admin: expected strings"};
      a.allow.emplace_back(x.as_string());
    }
  }
  return {};
}

// nginx_config.http.lua_shared_dict: APISIX's dict names and default sizes
// (apisix/cli/config.lua). A size is checked as lua_shared_dict checks it (at
// least 8k); a name APISIX does not define is never rendered into its
// nginx.conf, so it is ignored here too, with a warning.
Status parse_lua_shared_dict(const json::value& r, NodeConfig& c) {
  static const std::pair<const char*, const char*> kDefaults[] = {
      {"internal-status", "10m"}, {"plugin-limit-req", "10m"}, {"plugin-limit-count", "10m"},
      {"prometheus-metrics", "128m"}, {"plugin-limit-conn", "10m"}, {"worker-events", "10m"},
      {"lrucache-lock", "10m"}, {"balancer-ewma", "10m"}, {"balancer-ewma-locks", "10m"},
      {"balancer-ewma-last-touched-at", "10m"}, {"plugin-limit-req-redis-cluster-slot-lock", "1m"},
      {"plugin-limit-count-lock", "1m"}, {"plugin-limit-count-redis-cluster-slot-lock", "1m"},
      {"plugin-limit-conn-redis-cluster-slot-lock", "1m"}, {"plugin-graphql-limit-count", "10m"},
      {"plugin-graphql-limit-count-reset-header", "10m"}, {"plugin-ai-rate-limiting", "10m"},
      {"plugin-ai-rate-limiting-reset-header", "10m"}, {"tracing_buffer", "32m"}, {"plugin-api-breaker", "10m"},
      {"etcd-cluster-health-check", "10m"}, {"discovery", "1m"}, {"jwks", "1m"}, {"introspection", "10m"},
      {"access-tokens", "1m"}, {"ext-plugin", "1m"}, {"tars", "1m"}, {"cas-auth", "10m"},
      {"ocsp-stapling", "10m"}, {"mcp-session", "10m"}};
  for (const auto& [name, size] : kDefaults) c.lua_shared_dict[name] = *nginx_size(size);
  const json::value* v = at(r, {"nginx_config", "http", "lua_shared_dict"});
  if (!v) return {};
  if (!v->is_object()) return Error{"nginx_config.http.lua_shared_dict: expected a mapping of dict name to size"};
  for (const auto& kv : v->as_object()) {
    const std::string name(kv.key());
    // A name is echoed as is when it is a plain word, quoted and escaped otherwise.
    const std::string shown = name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") ==
                                          std::string::npos && !name.empty()
                                  ? name
                                  : json::serialize(json::string(name));
    auto it = c.lua_shared_dict.find(name);
    if (it == c.lua_shared_dict.end()) {
      c.warnings.push_back(fmt::format("nginx_config.http.lua_shared_dict.{}: unknown shared dict (ignored)", shown));
      continue;
    }
    const json::value& sv = kv.value();
    std::optional<uint64_t> size;
    if (sv.is_string()) size = nginx_size(sv.as_string());
    else if (sv.is_int64() && sv.as_int64() > 0) size = static_cast<uint64_t>(sv.as_int64());
    if (!size || *size < 8192)
      return Error{fmt::format("nginx_config.http.lua_shared_dict.{}: invalid size {} (bytes, or a number with a "
                               "k, m or g suffix; at least 8k)", shown, json::serialize(sv))};
    it->second = *size;
  }
  return {};
}

// A list of addresses/CIDRs compiled into a matcher; errors name the key
// and the entry. `unix_ok`: "unix:" is accepted (nginx's set_real_ip_from
// takes it) and matches nothing, since Holdfast listens on TCP only.
Result<router::IpMatcher> ip_list(const json::value& v, const std::string& key, bool unix_ok) {
  if (!v.is_array()) return Error{fmt::format("{}: expected a list of IP addresses or CIDRs, got {}", key, json::serialize(v))};
  std::vector<std::string> cidrs;
  size_t i = 0;
  for (const auto& x : v.as_array()) {
    std::string path = fmt::format("{}[{}]", key, i++);
    if (!x.is_string()) return Error{fmt::format("{}: expected an IP address or CIDR, got {}", path, json::serialize(x))};
    std::string_view e = x.as_string();
    if (unix_ok && e == "unix:") continue;
    auto one = router::IpMatcher::compile({std::string(e)});
    if (!one) return Error{fmt::format("{}: invalid IP address or CIDR {}", path, json::serialize(x))};
    cidrs.emplace_back(e);
  }
  return router::IpMatcher::compile(cidrs);
}

// nginx_config.http.real_ip_* (nginx's realip module, APISIX's defaults)
// and apisix.trusted_addresses.
Status parse_client_addr(const json::value& r, ClientAddrConfig& c) {
  if (auto v = at(r, {"nginx_config", "http", "real_ip_header"})) {
    static constexpr std::string_view kToken = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    if (!v->is_string() || v->as_string().empty() ||
        std::string_view(v->as_string()).find_first_not_of(kToken) != std::string_view::npos)
      return Error{fmt::format("nginx_config.http.real_ip_header: expected a header name, got {}", json::serialize(*v))};
    std::string h(v->as_string());
    for (auto& ch : h) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (h == "proxy_protocol")
      return Error{"nginx_config.http.real_ip_header: proxy_protocol is not supported (Holdfast does not accept the "
                   "PROXY protocol)"};
    c.real_ip_xff = h == "x-forwarded-for";
    c.real_ip_header = std::move(h);
  }
  if (auto v = at(r, {"nginx_config", "http", "real_ip_recursive"})) {
    // APISIX writes "off"; YAML 1.1 readers may hand over a boolean.
    if (v->is_bool()) c.real_ip_recursive = v->as_bool();
    else if (v->is_string() && (v->as_string() == "on" || v->as_string() == "off")) c.real_ip_recursive = v->as_string() == "on";
    else return Error{fmt::format("nginx_config.http.real_ip_recursive: expected on or off, got {}", json::serialize(*v))};
  }
  if (auto v = at(r, {"nginx_config", "http", "real_ip_from"})) {
    auto m = ip_list(*v, "nginx_config.http.real_ip_from", true);
    if (!m) return Error{m.error()};
    c.real_ip_from = std::move(*m);
  }
  if (auto v = at(r, {"apisix", "trusted_addresses"})) {
    auto m = ip_list(*v, "apisix.trusted_addresses", false);
    if (!m) return Error{m.error()};
    if (v->as_array().empty()) return Error{"apisix.trusted_addresses: expected at least one IP address or CIDR"};
    c.trusted_addresses = std::move(*m);
  }
  return {};
}

// plugin_attr.prometheus, as APISIX's config-default.yaml has it.
Status parse_prometheus_attr(const json::value& r, NodeConfig::Prometheus& p) {
  const json::value* attr = at(r, {"plugin_attr", "prometheus"});
  if (!attr) return {};
  if (!attr->is_object()) return Error{"plugin_attr.prometheus: expected a mapping"};
  const json::object& o = attr->as_object();
  if (auto it = o.find("enable_export_server"); it != o.end()) {
    if (!it->value().is_bool()) return Error{"plugin_attr.prometheus.enable_export_server: expected a boolean"};
    p.export_server = it->value().as_bool();
  }
  if (auto it = o.find("export_addr"); it != o.end()) {
    const json::object* a = it->value().if_object();
    if (!a) return Error{"plugin_attr.prometheus.export_addr: expected a mapping with ip and port"};
    if (auto ip = a->find("ip"); ip != a->end()) {
      if (!ip->value().is_string()) return Error{"plugin_attr.prometheus.export_addr.ip: expected a string"};
      p.export_addr.ip = std::string(ip->value().as_string());
      boost::system::error_code ec;
      boost::asio::ip::make_address(p.export_addr.ip, ec);
      if (ec) return Error{"plugin_attr.prometheus.export_addr.ip: not an IP address: " + p.export_addr.ip};
    }
    if (auto pt = a->find("port"); pt != a->end()) {
      auto pr = port(pt->value(), "plugin_attr.prometheus.export_addr.port");
      if (!pr) return Error{pr.error()};
      p.export_addr.port = *pr;
    }
  }
  for (auto [key, dst] : {std::pair{"export_uri", &p.export_uri}, std::pair{"metric_prefix", &p.metric_prefix}}) {
    auto it = o.find(key);
    if (it == o.end()) continue;
    const json::string* s = it->value().if_string();
    if (!s || s->empty()) return Error{fmt::format("plugin_attr.prometheus.{}: expected a non-empty string", key)};
    *dst = std::string(*s);
  }
  if (p.export_uri.front() != '/') return Error{"plugin_attr.prometheus.export_uri: expected a path starting with /"};
  // A metric name is [a-zA-Z_:][a-zA-Z0-9_:]*: the prefix starts one.
  if (p.metric_prefix.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:") !=
          std::string::npos ||
      std::isdigit(static_cast<unsigned char>(p.metric_prefix[0])))
    return Error{"plugin_attr.prometheus.metric_prefix: a metric name prefix has only letters, digits, _ and :"};
  if (auto it = o.find("default_buckets"); it != o.end()) {
    const json::array* a = it->value().if_array();
    if (!a || a->empty()) return Error{"plugin_attr.prometheus.default_buckets: expected a list of numbers"};
    for (const auto& v : *a) {
      if (!v.is_number()) return Error{"plugin_attr.prometheus.default_buckets: expected a list of numbers"};
      double d = v.to_number<double>();
      if (!std::isfinite(d) || (!p.default_buckets.empty() && d <= p.default_buckets.back()))
        return Error{"plugin_attr.prometheus.default_buckets: expected increasing finite numbers"};
      p.default_buckets.push_back(d);
    }
  }
  return {};
}

// plugin_attr: Holdfast implements redirect.https_port (read in
// parse_node_config). Every other key, of a plugin Holdfast has or not, is
// named in a warning rather than passed over.
void plugin_attr_warnings(const json::value& r, std::vector<std::string>& warnings) {
  const json::value* attr = at(r, {"plugin_attr"});
  if (!attr) return;
  auto shown = [](std::string_view k) {
    const bool plain = !k.empty() && k.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") ==
                                         std::string_view::npos;
    return plain ? std::string(k) : json::serialize(json::string(k));
  };
  if (!attr->is_object()) {
    warnings.push_back("plugin_attr: expected a mapping of plugin name to attributes (ignored)");
    return;
  }
  for (const auto& [plugin, v] : attr->as_object()) {
    const json::object* o = v.if_object();
    if (plugin == "redirect" && o) {
      for (const auto& kv : *o)
        if (kv.key() != "https_port")
          warnings.push_back(fmt::format("plugin_attr.redirect.{}: not supported (ignored)", shown(kv.key())));
      continue;
    }
    if (plugin == "prometheus" && o) {
      static const std::set<std::string_view> known = {"export_addr", "export_uri", "metric_prefix",
                                                       "enable_export_server", "default_buckets"};
      for (const auto& kv : *o)
        if (!known.count(kv.key()))
          warnings.push_back(fmt::format("plugin_attr.prometheus.{}: not supported (ignored)", shown(kv.key())));
      continue;
    }
    std::string keys;
    if (o)
      for (const auto& kv : *o) keys += (keys.empty() ? "" : ", ") + shown(kv.key());
    warnings.push_back(fmt::format("plugin_attr.{}: not supported (ignored){}", shown(plugin),
                                   keys.empty() ? "" : ": " + keys));
  }
}

}  // namespace

std::string NodeConfig::standalone_path() const {
  return conf_dir + (config_provider == "json" ? "/apisix.json" : "/apisix.yaml");
}

// An optional '-' then 1-18 digits (fits int64; "-" alone is not a number).
static bool is_integer(const std::string& s) {
  size_t i = (!s.empty() && s[0] == '-') ? 1 : 0;
  if (s.size() == i || s.size() - i > 18) return false;
  return s.find_first_not_of("0123456789", i) == std::string::npos;
}

// APISIX resolves ${{VAR}} inside parsed values (not the raw text, so
// comments are ignored) and gives numeric and boolean results their type.
static Status resolve_env(json::value& v, const std::string& path) {
  if (v.is_string()) {
    std::string_view s = v.as_string();
    if (s.find("${{") == std::string_view::npos) return {};
    auto r = substitute_env(s);
    if (!r) return Error{path + ": " + r.error()};
    const std::string& out = *r;
    if (out == "true") v = true;
    else if (out == "false") v = false;
    else if (is_integer(out) && std::to_string(std::stoll(out)) == out)  // "007" and "+1" stay text
      v = std::stoll(out);
    else v = json::string(out);
  } else if (v.is_array()) {
    size_t i = 0;
    for (auto& e : v.as_array())
      if (auto st = resolve_env(e, fmt::format("{}[{}]", path, i++)); !st) return st;
  } else if (v.is_object()) {
    for (auto& kv : v.as_object())
      if (auto st = resolve_env(kv.value(), path.empty() ? std::string(kv.key()) : path + "." + std::string(kv.key())); !st)
        return st;
  }
  return {};
}

// apisix.dns_resolver ("ip", "ip:port", "[v6]:port" or a bare v6),
// dns_resolver_valid, resolver_timeout, enable_resolv_search_opt.
Status parse_dns(const json::value& r, DnsConfig& d) {
  if (const json::value* v = at(r, {"apisix", "dns_resolver"})) {
    if (!v->is_array()) return Error{"apisix.dns_resolver: expected a list of \"ip[:port]\""};
    size_t i = 0;
    for (const auto& item : v->as_array()) {
      const std::string key = fmt::format("apisix.dns_resolver[{}]", i++);
      if (!item.is_string()) return Error{key + ": expected a string \"ip[:port]\""};
      std::string s(item.as_string()), ip = s, port_text;
      if (!s.empty() && s[0] == '[') {
        auto close = s.find(']');
        if (close == std::string::npos) return Error{key + ": missing ']'"};
        ip = s.substr(1, close - 1);
        if (close + 1 < s.size()) {
          if (s[close + 1] != ':') return Error{key + ": expected ip[:port]"};
          port_text = s.substr(close + 2);
        }
      } else if (std::count(s.begin(), s.end(), ':') == 1) {
        ip = s.substr(0, s.find(':'));
        port_text = s.substr(s.find(':') + 1);
      }
      boost::system::error_code ec;
      boost::asio::ip::make_address(ip, ec);
      if (ec) return Error{fmt::format("{}: expected an IP address, got \"{}\"", key, log::json_escape(s))};
      DnsConfig::Nameserver ns{ip, 53};
      if (!port_text.empty()) {
        char* end = nullptr;
        long p = std::strtol(port_text.c_str(), &end, 10);
        if (*end || p < 1 || p > 65535) return Error{key + ": expected a port number 1-65535"};
        ns.port = static_cast<uint16_t>(p);
      }
      d.nameservers.push_back(ns);
    }
  }
  if (const json::value* v = at(r, {"apisix", "dns_resolver_valid"})) {
    if (!v->is_int64() || v->as_int64() < 0 || v->as_int64() > 86400 * 7)
      return Error{"apisix.dns_resolver_valid: expected a number of seconds"};
    d.valid = static_cast<int>(v->as_int64());
  }
  if (const json::value* v = at(r, {"apisix", "resolver_timeout"})) {
    auto n = number(*v, "apisix.resolver_timeout", 0);
    if (!n) return Error{n.error()};
    d.timeout = std::min(*n, 60.0);
  }
  if (const json::value* v = at(r, {"apisix", "enable_resolv_search_opt"})) {
    if (!v->is_bool()) return Error{"apisix.enable_resolv_search_opt: expected a boolean"};
    d.search = v->as_bool();
  }
  return {};
}

// apisix.ssl (APISIX_COMPAT §6.1; defaults in SslConfig). Certificates are
// not here: they come from `ssls` resources (src/tls/).
Status parse_ssl(const json::value& r, SslConfig& s, std::vector<std::string>& warnings) {
  const json::value* v = at(r, {"apisix", "ssl"});
  if (!v) return {};
  if (!v->is_object()) return Error{"apisix.ssl: expected a mapping"};
  const auto& o = v->as_object();
  auto get = [&](const char* key) -> const json::value* {
    auto it = o.find(key);
    return it == o.end() || it->value().is_null() ? nullptr : &it->value();
  };
  if (auto e = get("enable")) {
    if (!e->is_bool()) return Error{"apisix.ssl.enable: expected a boolean"};
    s.enable = e->as_bool();
  }
  if (auto l = get("listen")) {
    if (!l->is_array() || l->as_array().empty()) return Error{"apisix.ssl.listen: expected a list of {ip, port}"};
    s.listen.clear();
    size_t i = 0;
    for (const auto& item : l->as_array()) {
      const std::string k = fmt::format("apisix.ssl.listen[{}]", i++);
      if (!item.is_object()) return Error{k + ": expected {ip, port}"};
      ListenAddr a{"0.0.0.0", 9443};  // APISIX's defaults for a missing ip or port
      for (const auto& kv : item.as_object()) {
        const std::string_view key = kv.key();
        const std::string shown = log::json_escape(key);
        if (key == "ip") {
          if (!kv.value().is_string()) return Error{k + ".ip: expected a string"};
          a.ip = std::string(kv.value().as_string());
          boost::system::error_code ec;
          boost::asio::ip::make_address(a.ip, ec);
          if (ec) return Error{fmt::format("{}.ip: expected an IP address, got \"{}\"", k, log::json_escape(a.ip))};
        } else if (key == "port") {
          auto p = port(kv.value(), k + ".port");
          if (!p) return Error{p.error()};
          a.port = *p;
        } else if (key == "enable_http3") {
          if (!kv.value().is_bool()) return Error{k + ".enable_http3: expected a boolean"};
          if (kv.value().as_bool()) warnings.push_back(k + ".enable_http3: HTTP/3 is not supported (ignored)");
        } else if (key == "enable_http2") {
          // APISIX 3.9 removed it; older files still carry it, so it is
          // accepted and named (HTTP/2 is per node: apisix.enable_http2).
          if (!kv.value().is_bool()) return Error{k + ".enable_http2: expected a boolean"};
          warnings.push_back(k + ".enable_http2 is deprecated (removed in APISIX 3.9) and ignored: "
                                 "HTTP/2 follows apisix.enable_http2");
        } else {
          warnings.push_back(fmt::format("unknown key {}.{} (ignored)", k, shown));
        }
      }
      s.listen.push_back(a);
    }
  }
  if (auto p = get("ssl_protocols")) {
    if (!p->is_string()) return Error{"apisix.ssl.ssl_protocols: expected a string such as \"TLSv1.2 TLSv1.3\""};
    s.protocols.clear();
    std::string_view rest = p->as_string();
    while (!rest.empty()) {
      const size_t start = rest.find_first_not_of(" \t");
      if (start == std::string_view::npos) break;
      rest.remove_prefix(start);
      const size_t end = std::min(rest.find_first_of(" \t"), rest.size());
      const std::string tok(rest.substr(0, end));
      rest.remove_prefix(end);
      if (tok == "TLSv1.1" || tok == "TLSv1.2" || tok == "TLSv1.3") {
        if (std::find(s.protocols.begin(), s.protocols.end(), tok) == s.protocols.end()) s.protocols.push_back(tok);
      } else if (tok == "SSLv2" || tok == "SSLv3" || tok == "TLSv1") {
        warnings.push_back("apisix.ssl.ssl_protocols: " + tok + " is not supported (ignored)");
      } else {
        return Error{fmt::format("apisix.ssl.ssl_protocols: unknown protocol \"{}\" (TLSv1.1, TLSv1.2, TLSv1.3)",
                                 log::json_escape(tok))};
      }
    }
    if (s.protocols.empty()) return Error{"apisix.ssl.ssl_protocols: no supported protocol (TLSv1.1, TLSv1.2, TLSv1.3)"};
  }
  if (auto c = get("ssl_ciphers")) {
    if (!c->is_string() || c->as_string().empty()) return Error{"apisix.ssl.ssl_ciphers: expected a cipher list"};
    s.ciphers = std::string(c->as_string());
  }
  if (auto t = get("ssl_session_tickets")) {
    if (!t->is_bool()) return Error{"apisix.ssl.ssl_session_tickets: expected a boolean"};
    s.session_tickets = t->as_bool();
  }
  if (auto f = get("fallback_sni")) {
    if (!f->is_string()) return Error{"apisix.ssl.fallback_sni: expected a host name"};
    std::string name(f->as_string());
    for (char& ch : name)
      if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
    if (!name.empty() && name.back() == '.') name.pop_back();
    const bool ok = !name.empty() && name.size() <= 255 &&
                    name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-._") == std::string::npos;
    if (!ok)
      return Error{fmt::format("apisix.ssl.fallback_sni: expected a host name, got \"{}\"",
                               log::json_escape(f->as_string()))};
    s.fallback_sni = std::move(name);
  }
  if (auto t = get("ssl_trusted_certificate")) {
    if (!t->is_string()) return Error{"apisix.ssl.ssl_trusted_certificate: expected a string"};
    s.trusted_certificate = std::string(t->as_string());
  }
  if (get("ssl_cert") || get("ssl_cert_key"))
    warnings.push_back("apisix.ssl.ssl_cert and ssl_cert_key are not supported (ignored): certificates come from ssls");
  if (get("key_encrypt_salt"))
    warnings.push_back("apisix.ssl.key_encrypt_salt is not supported (ignored): use apisix.data_encryption.keyring");
  if (std::find(s.protocols.begin(), s.protocols.end(), "TLSv1.1") != s.protocols.end())
    warnings.push_back("apisix.ssl.ssl_protocols: TLSv1.1 lowers OpenSSL's security level to 0 for the handshakes "
                       "that may use it, and needs a cipher usable with TLSv1.1 in ssl_ciphers");
  return {};
}

Result<NodeConfig> parse_node_config(std::string_view text, const std::string& conf_dir) {
  // config.yaml carries no resources: the per-resource depth is ample.
  auto doc = yaml_to_json(text, budgets::document(0));
  if (!doc) return Error{doc.error()};
  if (auto st = resolve_env(*doc, ""); !st) return Error{st.error()};
  NodeConfig c;
  c.conf_dir = conf_dir;
  c.raw = std::move(*doc);
  if (c.raw.is_null()) c.raw = json::object();
  if (!c.raw.is_object()) return Error{"config.yaml: the top level must be a mapping"};
  const json::value& r = c.raw;

  if (auto v = at(r, {"apisix", "node_listen"})) {
    if (auto s = parse_listen(*v, c.node_listen); !s) return Error{s.error()};
  }
  {
    auto s = string_at(r, {"apisix", "router", "http"}, "apisix.router.http");
    if (!s) return Error{s.error()};
    if (s->empty() || *s == "radixtree_host_uri") c.router = RouterKind::radixtree_host_uri;
    else if (*s == "radixtree_uri") c.router = RouterKind::radixtree_uri;
    else if (*s == "radixtree_uri_with_parameter") c.router = RouterKind::radixtree_uri_with_parameter;
    else
      return Error{"apisix.router.http: must be one of radixtree_host_uri, radixtree_uri, "
                   "radixtree_uri_with_parameter; got " + *s};
  }
  if (auto v = at(r, {"apisix", "enable_http2"})) {
    if (!v->is_bool()) return Error{"apisix.enable_http2: expected a boolean"};
    c.http2.enable = v->as_bool();
  }
  {
    struct H2Key {
      const char* name;
      uint32_t& dst;
      int64_t min, max;
    };
    for (H2Key k : {H2Key{"max_concurrent_streams", c.http2.max_concurrent_streams, 1, 65536},
                    H2Key{"max_requests", c.http2.max_requests, 1, 1LL << 31},
                    H2Key{"max_header_list_size", c.http2.max_header_list_size, 1024, 1 << 20},
                    H2Key{"hpack_table_size", c.http2.hpack_table_size, 0, 1 << 16},
                    H2Key{"control_frame_rate", c.http2.control_frame_rate, 10, 1 << 20}}) {
      if (auto v = at(r, {"holdfast", "http2", k.name})) {
        if (!v->is_int64() || v->as_int64() < k.min || v->as_int64() > k.max)
          return Error{fmt::format("holdfast.http2.{}: expected an integer {}-{}, got {}", k.name, k.min, k.max,
                                   json::serialize(*v))};
        k.dst = static_cast<uint32_t>(v->as_int64());
      }
    }
  }
  if (auto v = at(r, {"apisix", "delete_uri_tail_slash"})) {
    if (!v->is_bool()) return Error{"apisix.delete_uri_tail_slash: expected a boolean"};
    c.delete_uri_tail_slash = v->as_bool();
  }
  if (auto v = at(r, {"apisix", "max_post_args_readable_size"})) {
    if (!v->is_int64() || v->as_int64() < 0 || v->as_int64() > 64)
      return Error{"apisix.max_post_args_readable_size: expected an integer number of MiB from 0 to 64"};
    c.max_post_args_bytes = static_cast<uint64_t>(v->as_int64() == 0 ? 64 : v->as_int64()) << 20;
  }
  if (auto v = at(r, {"graphql", "max_size"})) {
    if (!v->is_int64() || v->as_int64() < 0) return Error{"graphql.max_size: expected a non-negative integer (bytes)"};
    c.graphql_max_size = static_cast<uint64_t>(v->as_int64());
  }
  if (auto v = at(r, {"apisix", "match_uri_encoded_slash"})) {
    if (!v->is_bool()) return Error{"apisix.match_uri_encoded_slash: expected a boolean"};
    c.match_uri_encoded_slash = v->as_bool();
  }
  {
    auto s = string_at(r, {"deployment", "role"}, "deployment.role");
    if (!s) return Error{s.error()};
    if (!s->empty()) c.role = *s;
    if (c.role != "traditional" && c.role != "data_plane" && c.role != "control_plane")
      return Error{"deployment.role: must be one of traditional, data_plane, control_plane; got " + c.role};
    std::string section = "role_" + c.role;
    auto p = string_at(r, {"deployment", section.c_str(), "config_provider"},
                       "deployment." + section + ".config_provider");
    if (!p) return Error{p.error()};
    c.config_provider = p->empty() ? "etcd" : *p;
    bool ok = c.config_provider == "etcd" ||
              (c.role == "data_plane" && (c.config_provider == "yaml" || c.config_provider == "json"));
    if (!ok)
      return Error{fmt::format("deployment.{}.config_provider: {} is not supported for role {}",
                               section, c.config_provider, c.role)};
  }
  if (auto v = at(r, {"nginx_config", "worker_processes"})) {
    if (v->is_string() && v->as_string() == "auto") {
      c.workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    } else if (v->is_int64() && v->as_int64() >= 1 && v->as_int64() <= 256) {
      c.workers = static_cast<int>(v->as_int64());
    } else {
      return Error{"nginx_config.worker_processes: expected \"auto\" or an integer 1-256, got " +
                   json::serialize(*v)};
    }
  }
  {
    auto s = string_at(r, {"nginx_config", "error_log_level"}, "nginx_config.error_log_level");
    if (!s) return Error{s.error()};
    if (!s->empty()) {
      static const std::set<std::string> levels = {"debug", "info", "notice", "warn", "error", "crit", "alert", "emerg"};
      if (!levels.count(*s)) return Error{"nginx_config.error_log_level: unknown level " + *s};
      c.log_level = *s;
    }
  }
  if (auto v = at(r, {"plugins"})) {
    if (!v->is_array()) return Error{"plugins: expected a list of plugin names"};
    size_t i = 0;
    for (const auto& p : v->as_array()) {
      if (!p.is_string()) return Error{fmt::format("plugins[{}]: expected a string", i)};
      c.plugins.emplace_back(p.as_string());
      ++i;
    }
  }

  // Holdfast-specific settings live under `holdfast:` so APISIX files stay valid.
  auto num = [&](std::initializer_list<const char*> path, const std::string& key, double& dst,
                 double min_excl) -> Status {
    if (auto v = at(r, path)) {
      auto n = number(*v, key, min_excl);
      if (!n) return Error{n.error()};
      dst = *n;
    }
    return {};
  };
  double head = static_cast<double>(c.limits.max_head_bytes);
  double uri = static_cast<double>(c.limits.max_uri_bytes);
  double body = static_cast<double>(c.limits.max_body_bytes);
  for (auto s : {num({"holdfast", "client_header_timeout"}, "holdfast.client_header_timeout", c.client_header_timeout, 0),
                 num({"holdfast", "client_body_timeout"}, "holdfast.client_body_timeout", c.client_body_timeout, 0),
                 num({"holdfast", "send_timeout"}, "holdfast.send_timeout", c.send_timeout, 0),
                 num({"holdfast", "keepalive_timeout"}, "holdfast.keepalive_timeout", c.keepalive_timeout, 0),
                 num({"holdfast", "shutdown_timeout"}, "holdfast.shutdown_timeout", c.shutdown_timeout, 0),
                 num({"holdfast", "max_header_size"}, "holdfast.max_header_size", head, 1023),
                 num({"holdfast", "max_uri_size"}, "holdfast.max_uri_size", uri, 255),
                 num({"holdfast", "max_body_size"}, "holdfast.max_body_size", body, -1)}) {
    if (!s) return Error{s.error()};
  }
  c.limits.max_head_bytes = static_cast<size_t>(head);
  c.limits.max_uri_bytes = static_cast<size_t>(uri);
  c.limits.max_body_bytes = static_cast<uint64_t>(body);
  // APISIX's own keys (nginx_config.http.*, nginx syntax, APISIX's
  // defaults); the older holdfast.* names above are aliases, and when both
  // are set the nginx_config value wins with a warning.
  struct TimeKey {
    const char* name;
    double& dst;
  };
  std::set<std::string> from_nginx;
  for (TimeKey k : {TimeKey{"client_header_timeout", c.client_header_timeout},
                    TimeKey{"client_body_timeout", c.client_body_timeout}, TimeKey{"send_timeout", c.send_timeout},
                    TimeKey{"keepalive_timeout", c.keepalive_timeout}}) {
    if (auto v = at(r, {"nginx_config", "http", k.name})) {
      auto t = nginx_time(*v, std::string("nginx_config.http.") + k.name);
      if (!t) return Error{t.error()};
      if (*t <= 0 && std::string_view(k.name) != "keepalive_timeout")
        return Error{fmt::format("nginx_config.http.{}: must be greater than 0", k.name)};
      k.dst = *t;
      from_nginx.insert(k.name);
    }
  }
  if (auto v = at(r, {"nginx_config", "http", "client_max_body_size"})) {
    auto sz = nginx_size(*v, "nginx_config.http.client_max_body_size");
    if (!sz) return Error{sz.error()};
    c.limits.max_body_bytes = *sz;
    from_nginx.insert("max_body_size");
  }
  if (auto v = at(r, {"nginx_config", "event", "worker_connections"})) {
    if (!v->is_int64() || v->as_int64() < 16 || v->as_int64() > 1048576)
      return Error{"nginx_config.event.worker_connections: expected an integer 16-1048576, got " + json::serialize(*v)};
    c.worker_connections = static_cast<int>(v->as_int64());
  }
  if (auto v = at(r, {"nginx_config", "worker_rlimit_nofile"})) {
    if (!v->is_int64() || v->as_int64() < 32 || v->as_int64() > 16777216)
      return Error{"nginx_config.worker_rlimit_nofile: expected an integer 32-16777216, got " + json::serialize(*v)};
    c.rlimit_nofile = static_cast<int>(v->as_int64());
  }
  for (const char* alias : {"client_header_timeout", "client_body_timeout", "send_timeout", "keepalive_timeout",
                            "max_body_size"}) {
    if (from_nginx.count(alias) && at(r, {"holdfast", alias})) {
      c.warnings.push_back(fmt::format("holdfast.{0} is ignored: nginx_config.http.{1} is set", alias,
                                       std::string_view(alias) == "max_body_size" ? "client_max_body_size" : alias));
    }
  }
  {
    auto s = string_at(r, {"holdfast", "log_format"}, "holdfast.log_format");
    if (!s) return Error{s.error()};
    if (*s == "json") c.log_json = true;
    else if (!s->empty() && *s != "text") return Error{"holdfast.log_format: must be text or json, got " + *s};
    auto a = string_at(r, {"holdfast", "access_log"}, "holdfast.access_log");
    if (!a) return Error{a.error()};
    c.access_log = *a == "off" ? "" : *a;
  }
  if (auto v = at(r, {"apisix", "status"})) {
    if (!v->is_object()) return Error{"apisix.status: expected {ip, port}"};
    const auto& o = v->as_object();
    if (auto ip = o.find("ip"); ip != o.end()) {
      if (!ip->value().is_string()) return Error{"apisix.status.ip: expected a string"};
      c.status_listen.ip = std::string(ip->value().as_string());
    }
    if (auto p = o.find("port"); p != o.end()) {
      auto pr = port(p->value(), "apisix.status.port");
      if (!pr) return Error{pr.error()};
      c.status_listen.port = *pr;
    }
  }
  if (auto st = parse_ssl(r, c.ssl, c.warnings); !st) return Error{st.error()};
  if (auto v = at(r, {"plugin_attr", "redirect", "https_port"})) {
    auto pr = port(*v, "plugin_attr.redirect.https_port");
    if (!pr) return Error{pr.error()};
    c.redirect_https_port = *pr;
  } else if (c.ssl.enable && !c.ssl.listen.empty()) {
    // APISIX picks one of the listen ports at random; the first is as good
    // and stable.
    c.redirect_https_port = c.ssl.listen[0].port;
  }
  if (auto st = parse_prometheus_attr(r, c.prometheus); !st) return Error{st.error()};
  if (auto st = parse_etcd(r, c.etcd); !st) return Error{st.error()};
  if (auto st = parse_admin(r, c.admin); !st) return Error{st.error()};
  // The Admin API speaks plain HTTP only: say so rather than let an
  // operator believe it is behind TLS (or client certificates).
  if (const json::value* h = at(r, {"deployment", "admin", "https_admin"}); h && !(h->is_bool() && !h->as_bool()))
    c.warnings.push_back("deployment.admin.https_admin: the Admin API over TLS is not supported yet (ignored): "
                         "admin_listen serves plain HTTP");
  if (const json::value* m = at(r, {"deployment", "admin", "admin_api_mtls"}); m && !(m->is_object() && m->as_object().empty()))
    c.warnings.push_back("deployment.admin.admin_api_mtls: the Admin API over TLS is not supported yet (ignored): "
                         "admin_listen serves plain HTTP");
  if (auto st = parse_fallback(r, c.fallback, conf_dir, c.warnings); !st) return Error{st.error()};
  if (auto st = parse_lua_shared_dict(r, c); !st) return Error{st.error()};
  if (auto st = parse_client_addr(r, c.client_addr); !st) return Error{st.error()};
  if (auto st = parse_dns(r, c.dns); !st) return Error{st.error()};
  if (auto v = at(r, {"apisix", "data_encryption", "enable_encrypt_fields"})) {
    if (!v->is_bool()) return Error{"apisix.data_encryption.enable_encrypt_fields: expected a boolean"};
    c.encrypt_fields = v->as_bool();
  }
  if (auto v = at(r, {"apisix", "data_encryption", "keyring"})) {
    if (!v->is_array()) return Error{"apisix.data_encryption.keyring: expected a list of 16 or 32 character keys"};
    c.keyring.clear();
    size_t i = 0;
    for (const auto& k : v->as_array()) {
      // Never echo the key itself in the error.
      auto text = secret_text(k);
      if (!text || (text->size() != 16 && text->size() != 32))
        return Error{fmt::format("apisix.data_encryption.keyring[{}]: a key must be a string of 16 or 32 characters", i)};
      c.keyring.push_back(std::move(*text));
      ++i;
    }
  }
  plugin_attr_warnings(r, c.warnings);
  collect_unknown(r, "", c.warnings);
  collect_unsupported(r, c.warnings);
  return c;
}

Result<NodeConfig> load_node_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{"cannot open " + path};
  std::stringstream ss;
  ss << in.rdbuf();
  std::string dir = ".";
  if (auto slash = path.rfind('/'); slash != std::string::npos) dir = path.substr(0, slash);
  if (dir.empty()) dir = "/";
  auto c = parse_node_config(ss.str(), dir);
  if (c) c->config_path = path;
  return c;
}

}  // namespace holdfast
