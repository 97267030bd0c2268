#include "core/config.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "core/yaml_json.h"

namespace holdfast {
namespace json = boost::json;
namespace {

// Keys we know. A key mapped to "*" accepts any sub-keys (sections owned by
// later features or passed through untouched), so they are not warned about.
const std::set<std::string>& known_keys() {
  static const std::set<std::string> k = {
      "apisix", "apisix.node_listen", "apisix.router", "apisix.router.http", "apisix.router.ssl",
      "apisix.enable_admin", "apisix.enable_http2", "apisix.ssl*", "apisix.proxy_mode",
      "apisix.delete_uri_tail_slash", "apisix.data_encryption*", "apisix.enable_ipv6",
      "apisix.show_upstream_status_in_response_header", "apisix.normalize_uri_like_servlet",
      "apisix.extra_lua_path", "apisix.extra_lua_cpath", "apisix.enable_control", "apisix.control*",
      "apisix.id", "apisix.enable_server_tokens", "apisix.enable_reuseport", "apisix.proxy_cache*",
      "apisix.status*", "apisix.client_max_body_size", "apisix.stream_proxy*", "apisix.dns_resolver*",
      "apisix.resolver_timeout",
      "nginx_config", "nginx_config.worker_processes", "nginx_config.error_log_level",
      "nginx_config.error_log", "nginx_config.http*", "nginx_config.event*",
      "nginx_config.worker_rlimit_nofile", "nginx_config.worker_shutdown_timeout",
      "nginx_config.enable_cpu_affinity", "nginx_config.user", "nginx_config.main_configuration_snippet",
      "nginx_config.meta*", "nginx_config.stream*",
      "deployment", "deployment.role", "deployment.role_traditional*", "deployment.role_data_plane*",
      "deployment.role_control_plane*", "deployment.admin*", "deployment.etcd*",
      "deployment.fallback_cp*", "deployment.config_provider",
      "plugins", "stream_plugins", "plugin_attr*", "discovery*", "wasm*", "graphql*", "ext-plugin*",
      "xrpc*", "holdfast", "holdfast.client_header_timeout", "holdfast.client_body_timeout",
      "holdfast.send_timeout", "holdfast.keepalive_timeout", "holdfast.shutdown_timeout",
      "holdfast.max_header_size", "holdfast.max_uri_size", "holdfast.max_body_size", "holdfast.log_format",
      "holdfast.access_log", "holdfast.status_listen*"};
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

}  // namespace

std::string NodeConfig::standalone_path() const {
  return conf_dir + (config_provider == "json" ? "/apisix.json" : "/apisix.yaml");
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
    else if (!out.empty() && out.find_first_not_of("0123456789-") == std::string::npos && out.size() < 19 &&
             out.find('-', 1) == std::string::npos)
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

Result<NodeConfig> parse_node_config(std::string_view text, const std::string& conf_dir) {
  auto doc = yaml_to_json(text);
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
  if (auto v = at(r, {"apisix", "delete_uri_tail_slash"})) {
    if (!v->is_bool()) return Error{"apisix.delete_uri_tail_slash: expected a boolean"};
    c.delete_uri_tail_slash = v->as_bool();
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
  {
    auto s = string_at(r, {"holdfast", "log_format"}, "holdfast.log_format");
    if (!s) return Error{s.error()};
    if (*s == "json") c.log_json = true;
    else if (!s->empty() && *s != "text") return Error{"holdfast.log_format: must be text or json, got " + *s};
    auto a = string_at(r, {"holdfast", "access_log"}, "holdfast.access_log");
    if (!a) return Error{a.error()};
    c.access_log = *a == "off" ? "" : *a;
  }
  if (auto v = at(r, {"holdfast", "status_listen"})) {
    if (!v->is_object()) return Error{"holdfast.status_listen: expected {ip, port}"};
    std::vector<ListenAddr> tmp;
    json::array arr{*v};
    if (auto s = parse_listen(arr, tmp); !s)
      return Error{"holdfast.status_listen: " + s.error().substr(s.error().find(':') + 2)};
    c.status_listen = tmp[0];
  }
  collect_unknown(r, "", c.warnings);
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
