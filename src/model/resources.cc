#include "model/resources.h"

#include <fmt/format.h>

#include <boost/json.hpp>

#include "model/json_check.h"

namespace holdfast::model {
namespace {

const std::set<std::string> kMethods = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD",
                                        "OPTIONS", "CONNECT", "TRACE", "PURGE"};

std::optional<Timeout> parse_timeout(Checker& c) {
  const json::object* t = c.object("timeout");
  if (!t) return std::nullopt;
  Checker tc(*t, "timeout");
  tc.only({"connect", "send", "read"});
  Timeout out;
  auto cn = tc.number("connect", true, 0, true);
  auto sd = tc.number("send", true, 0, true);
  auto rd = tc.number("read", true, 0, true);
  if (tc.failed()) { c.fail("property \"timeout\" validation failed: " + tc.error()); return std::nullopt; }
  out.connect = *cn; out.send = *sd; out.read = *rd;
  return out;
}

std::optional<std::string> parse_id_field(Checker& c, const char* key, bool required) {
  const json::value* v = c.get(key);
  if (!v) {
    if (required) c.fail(fmt::format("property \"{}\" is required", key));
    return std::nullopt;
  }
  auto id = parse_id(*v);
  if (!id) {
    c.fail(fmt::format("property \"{}\" validation failed: object matches none of the required", key));
    return std::nullopt;
  }
  return *id;
}

std::optional<std::vector<std::string>> hosts_field(Checker& c, const char* single, const char* multi) {
  if (c.has(single) && c.has(multi)) { c.fail(fmt::format("only one of {} or {} is allowed", single, multi)); return std::nullopt; }
  std::vector<std::string> out;
  if (auto h = c.str(single)) out.push_back(*h);
  else if (auto hs = c.str_array(multi, 1)) out = *hs;
  for (const auto& h : out)
    if (!valid_host(h)) { c.fail(fmt::format("invalid host {}", h)); return std::nullopt; }
  return out;
}

std::vector<int> int_list(const json::object& o, const char* key, std::vector<int> def, Checker& c) {
  auto it = o.find(key);
  if (it == o.end()) return def;
  if (!it->value().is_array()) { c.fail(fmt::format("property \"{}\" validation failed: wrong type: expected array", key)); return def; }
  std::vector<int> out;
  for (const auto& v : it->value().as_array()) {
    if (!v.is_int64() || v.as_int64() < 200 || v.as_int64() > 599) {
      c.fail(fmt::format("property \"{}\" validation failed: expected status codes 200-599", key));
      return def;
    }
    out.push_back(static_cast<int>(v.as_int64()));
  }
  return out;
}

void parse_checks(Checker& c, Upstream& u) {
  const json::object* checks = c.object("checks");
  if (!checks) return;
  HealthCheckConfig hc;
  hc.passive_healthy_statuses = {200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
                                 300, 301, 302, 303, 304, 305, 306, 307, 308};
  Checker cc(*checks, "checks");
  cc.only({"active", "passive"});
  const json::object* active = cc.object("active");
  const json::object* passive = cc.object("passive");
  if (!active && !cc.failed()) cc.fail("object matches none of the required: [\"active\"]");
  if (active) {
    hc.active = true;
    Checker ac(*active, "active");
    ac.only({"type", "timeout", "concurrency", "host", "port", "http_path", "https_verify_certificate",
             "req_headers", "healthy", "unhealthy", "http_method", "http_req_body"});
    // Probes are GET requests without a body: another method or a body
    // would change what the nodes are asked, and so which are healthy.
    if (auto m = ac.str("http_method"); m && *m != "GET" && !ac.failed())
      ac.fail("http_method other than GET is not supported by Holdfast (probes use GET)");
    if (auto b = ac.str("http_req_body"); b && !b->empty() && !ac.failed())
      ac.fail("http_req_body is not supported by Holdfast (probes have no body)");
    hc.type = ac.one_of("type", {"http", "https", "tcp"}, "http").value_or("http");
    hc.timeout = ac.number("timeout", false, 0, true).value_or(1);
    hc.http_path = ac.str("http_path").value_or("/");
    hc.host = ac.str("host").value_or("");
    hc.port = static_cast<uint16_t>(ac.integer("port", false, 1, 65535).value_or(0));
    hc.req_headers = ac.str_array("req_headers").value_or(std::vector<std::string>{});
    hc.https_verify_certificate = ac.boolean("https_verify_certificate").value_or(true);
    if (const json::object* h = ac.object("healthy")) {
      Checker hcheck(*h, "healthy");
      hc.healthy_interval = hcheck.integer("interval", false, 1).value_or(1);
      hc.healthy_successes = static_cast<int>(hcheck.integer("successes", false, 1, 254).value_or(2));
      hc.healthy_statuses = int_list(*h, "http_statuses", hc.healthy_statuses, hcheck);
      if (hcheck.failed()) ac.fail("property \"healthy\" validation failed: " + hcheck.error());
    }
    if (const json::object* h = ac.object("unhealthy")) {
      Checker ucheck(*h, "unhealthy");
      hc.unhealthy_interval = ucheck.integer("interval", false, 1).value_or(1);
      hc.http_failures = static_cast<int>(ucheck.integer("http_failures", false, 1, 254).value_or(5));
      hc.tcp_failures = static_cast<int>(ucheck.integer("tcp_failures", false, 1, 254).value_or(2));
      hc.timeouts = static_cast<int>(ucheck.integer("timeouts", false, 1, 254).value_or(3));
      hc.unhealthy_statuses = int_list(*h, "http_statuses", hc.unhealthy_statuses, ucheck);
      if (ucheck.failed()) ac.fail("property \"unhealthy\" validation failed: " + ucheck.error());
    }
    if (ac.failed()) cc.fail("property \"active\" validation failed: " + ac.error());
  }
  if (passive) {
    hc.passive = true;
    Checker pc(*passive, "passive");
    if (const json::object* h = pc.object("healthy")) {
      Checker x(*h, "healthy");
      hc.passive_successes = static_cast<int>(x.integer("successes", false, 0, 254).value_or(5));
      hc.passive_healthy_statuses = int_list(*h, "http_statuses", hc.passive_healthy_statuses, x);
      if (x.failed()) pc.fail(x.error());
    }
    if (const json::object* h = pc.object("unhealthy")) {
      Checker x(*h, "unhealthy");
      hc.passive_http_failures = static_cast<int>(x.integer("http_failures", false, 0, 254).value_or(5));
      hc.passive_tcp_failures = static_cast<int>(x.integer("tcp_failures", false, 0, 254).value_or(2));
      hc.passive_timeouts = static_cast<int>(x.integer("timeouts", false, 0, 254).value_or(7));
      hc.passive_unhealthy_statuses = int_list(*h, "http_statuses", hc.passive_unhealthy_statuses, x);
      if (x.failed()) pc.fail(x.error());
    }
    if (pc.failed()) cc.fail("property \"passive\" validation failed: " + pc.error());
  }
  if (cc.failed()) { c.fail("property \"checks\" validation failed: " + cc.error()); return; }
  u.checks = hc;
}

}  // namespace

bool split_host_port(std::string_view s, std::string& host, int& port) {
  port = 0;
  if (s.empty()) return false;
  if (s[0] == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos) return false;
    host = std::string(s.substr(1, close - 1));
    s.remove_prefix(close + 1);
    if (s.empty()) return true;
    if (s[0] != ':') return false;
    s.remove_prefix(1);
  } else {
    auto colon = s.find(':');
    if (colon != s.rfind(':')) return false;  // bare IPv6: must use brackets
    host = std::string(s.substr(0, colon));
    if (colon == std::string_view::npos) return !host.empty();
    s.remove_prefix(colon + 1);
  }
  if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string_view::npos) return false;
  port = std::stoi(std::string(s));
  return port >= 1 && port <= 65535 && !host.empty();
}

Result<std::shared_ptr<const Upstream>> parse_upstream(const json::value& v, bool embedded) {
  if (!v.is_object()) return Error{"wrong type: expected object, got " + type_name(v)};
  auto u = std::make_shared<Upstream>();
  Checker c(v.as_object(), "upstream");
  c.only({"id", "type", "nodes", "service_name", "discovery_type", "discovery_args", "hash_on", "key",
          "retries", "retry_timeout", "timeout", "scheme", "pass_host", "upstream_host",
          "keepalive_pool", "tls", "checks", "name", "desc", "labels", "create_time", "update_time"});
  if (!embedded || c.has("id")) {
    if (auto id = parse_id_field(c, "id", !embedded)) u->id = *id;
  }
  u->type = c.str("type").value_or("roundrobin");
  if (!c.failed() && u->type != "roundrobin" && u->type != "chash" && u->type != "least_conn" && u->type != "ewma")
    c.fail("invalid type " + u->type + ": expected roundrobin, chash, least_conn or ewma");
  u->scheme = c.one_of("scheme", {"http", "https", "grpc", "grpcs", "tcp", "tls", "udp", "kafka"}, "http").value_or("http");
  const int default_port = (u->scheme == "https" || u->scheme == "grpcs" || u->scheme == "tls") ? 443 : 80;

  const json::value* nodes = c.get("nodes");
  if (!nodes && !c.has("service_name") && !c.failed())
    c.fail("value should match only one schema, but matches none");
  if (nodes && nodes->is_object()) {
    for (const auto& kv : nodes->as_object()) {
      UpstreamNode n;
      int port = 0;
      if (!split_host_port(kv.key(), n.host, port)) {
        c.fail(fmt::format("invalid node address {} (IPv6 address must be enclosed with '[' and ']')", std::string(kv.key())));
        break;
      }
      n.port = static_cast<uint16_t>(port ? port : default_port);
      if (!kv.value().is_int64() || kv.value().as_int64() < 0) {
        c.fail(fmt::format("property \"nodes\" validation failed: weight of {} must be an integer >= 0", std::string(kv.key())));
        break;
      }
      n.weight = static_cast<int>(kv.value().as_int64());
      u->nodes.push_back(n);
    }
  } else if (nodes && nodes->is_array()) {
    for (const auto& item : nodes->as_array()) {
      if (!item.is_object()) { c.fail("property \"nodes\" validation failed: node must be an object"); break; }
      Checker nc(item.as_object(), "node");
      UpstreamNode n;
      auto host = nc.str("host", true);
      auto port = nc.integer("port", false, 1, 65535);
      auto weight = nc.integer("weight", true, 0);
      n.priority = static_cast<int>(nc.integer("priority", false).value_or(0));
      if (nc.failed()) { c.fail("property \"nodes\" validation failed: " + nc.error()); break; }
      n.host = *host;
      if (n.host.size() > 2 && n.host.front() == '[' && n.host.back() == ']') n.host = n.host.substr(1, n.host.size() - 2);
      else if (n.host.find(':') != std::string::npos) { c.fail("IPv6 address must be enclosed with '[' and ']'"); break; }
      if (!valid_host(*host)) { c.fail("property \"nodes\" validation failed: invalid host " + *host); break; }
      n.port = static_cast<uint16_t>(port.value_or(default_port));
      n.weight = static_cast<int>(*weight);
      u->nodes.push_back(n);
    }
  } else if (nodes) {
    c.fail("property \"nodes\" validation failed: wrong type: expected object or array, got " + type_name(*nodes));
  }
  u->hash_on = c.one_of("hash_on", {"vars", "header", "cookie", "consumer", "vars_combinations"}, "vars").value_or("vars");
  u->key = c.str("key").value_or("");
  if (!c.failed() && u->type == "chash" && u->hash_on != "consumer" && u->key.empty())
    c.fail("missing key");
  u->retries = static_cast<int>(c.integer("retries", false, 0).value_or(-1));
  u->retry_timeout = c.number("retry_timeout", false, 0).value_or(0);
  u->timeout = parse_timeout(c);
  u->pass_host = c.one_of("pass_host", {"pass", "node", "rewrite"}, "pass").value_or("pass");
  u->upstream_host = c.str("upstream_host").value_or("");
  if (!c.failed() && u->pass_host == "rewrite" && u->upstream_host.empty())
    c.fail("property \"upstream_host\" is required when pass_host is rewrite");
  if (const json::object* kp = c.object("keepalive_pool")) {
    Checker kc(*kp, "keepalive_pool");
    kc.only({"size", "idle_timeout", "requests"});
    u->keepalive_size = static_cast<int>(kc.integer("size", false, 1).value_or(320));
    u->keepalive_idle = kc.number("idle_timeout", false, 0).value_or(60);
    u->keepalive_requests = static_cast<int>(kc.integer("requests", false, 1).value_or(1000));
    if (kc.failed()) c.fail("property \"keepalive_pool\" validation failed: " + kc.error());
  }
  if (const json::object* t = c.object("tls")) {
    Checker tc(*t, "tls");
    tc.only({"client_cert", "client_key", "client_cert_id", "verify"});
    u->tls.verify = tc.boolean("verify").value_or(false);
    // APISIX's certificate/private_key schema lengths.
    u->tls.client_cert = tc.str("client_cert", false, 128, 64 * 1024).value_or("");
    u->tls.client_key = tc.str("client_key", false, 64, 64 * 1024).value_or("");
    if (auto id = parse_id_field(tc, "client_cert_id", false)) u->tls.client_cert_id = *id;
    // As APISIX's schema: a certificate and its key together, or an SSL
    // object by id, never both.
    if (!tc.failed() && u->tls.client_cert.empty() != u->tls.client_key.empty())
      tc.fail("client_cert and client_key must be set together");
    if (!tc.failed() && !u->tls.client_cert.empty() && !u->tls.client_cert_id.empty())
      tc.fail("client_cert_id can not be used with client_cert or client_key");
    if (tc.failed()) c.fail("property \"tls\" validation failed: " + tc.error());
  }
  parse_checks(c, *u);
  if (c.failed()) return Error{c.error()};
  return std::shared_ptr<const Upstream>(std::move(u));
}

Result<std::shared_ptr<const Route>> parse_route(const json::value& v) {
  if (!v.is_object()) return Error{"wrong type: expected object, got " + type_name(v)};
  auto r = std::make_shared<Route>();
  Checker c(v.as_object(), "route");
  c.only({"id", "uri", "uris", "host", "hosts", "remote_addr", "remote_addrs", "methods", "vars",
          "filter_func", "priority", "plugins", "upstream", "upstream_id", "service_id",
          "plugin_config_id", "script", "script_id", "timeout", "enable_websocket", "status", "name",
          "desc", "labels", "create_time", "update_time"});
  if (auto id = parse_id_field(c, "id", true)) r->id = *id;
  if (c.has("uri") == c.has("uris") && !c.failed()) c.fail("value should match only one schema, but matches " + std::string(c.has("uri") ? "both" : "none"));
  if (auto u = c.str("uri", false, 1, 4096)) r->uris.push_back(*u);
  if (auto us = c.str_array("uris", 1)) r->uris = *us;
  for (const auto& u : r->uris)
    if (!c.failed() && (u.empty() || u[0] != '/') && u != "*") c.fail("invalid uri " + u + ": must start with /");
  if (auto h = hosts_field(c, "host", "hosts")) r->hosts = *h;
  if (c.has("remote_addr") && c.has("remote_addrs")) c.fail("only one of remote_addr or remote_addrs is allowed");
  if (auto a = c.str("remote_addr")) r->remote_addrs.push_back(*a);
  if (auto as = c.str_array("remote_addrs", 1)) r->remote_addrs = *as;
  for (const auto& a : r->remote_addrs)
    if (!c.failed() && !valid_ip_or_cidr(a)) c.fail("invalid remote_addr " + a);
  if (auto ms = c.str_array("methods")) {
    for (const auto& m : *ms)
      if (!c.failed() && !kMethods.count(m)) c.fail("property \"methods\" validation failed: matches none of the enum values: " + m);
    r->methods = *ms;
  }
  if (const json::value* vars = c.get("vars")) {
    if (!vars->is_array()) c.fail("property \"vars\" validation failed: wrong type: expected array, got " + type_name(*vars));
    else r->vars = *vars;
  }
  if (c.has("filter_func") && !c.failed()) c.fail("filter_func (Lua) is not supported by Holdfast");
  if ((c.has("script") || c.has("script_id")) && !c.failed()) c.fail("script (Lua) is not supported by Holdfast");
  r->priority = c.integer("priority").value_or(0);
  if (const json::object* p = c.object("plugins")) r->plugins = *p;
  if (const json::value* up = c.get("upstream")) {
    auto u = parse_upstream(*up, true);
    if (!u) c.fail("property \"upstream\" validation failed: " + u.error());
    else r->upstream = *u;
  }
  if (auto id = parse_id_field(c, "upstream_id", false)) r->upstream_id = *id;
  if (auto id = parse_id_field(c, "service_id", false)) r->service_id = *id;
  if (auto id = parse_id_field(c, "plugin_config_id", false)) r->plugin_config_id = *id;
  r->timeout = parse_timeout(c);
  r->enable_websocket = c.boolean("enable_websocket");
  // APISIX's enum {0, 1}, with its message (no list of values).
  const int64_t status = c.integer("status").value_or(1);
  if (!c.failed() && status != 0 && status != 1)
    c.fail("property \"status\" validation failed: matches none of the enum values");
  r->status = status == 0 ? 0 : 1;
  r->name = c.str("name", false, 1, 256).value_or("");
  c.str("desc", false, 0, 256);
  c.object("labels");
  if (!c.failed() && !c.has("plugins") && !c.has("upstream") && !c.has("upstream_id") && !c.has("service_id"))
    c.fail("object matches none of the required: [\"plugins\"] or [\"upstream\"] or [\"upstream_id\"] or [\"service_id\"]");
  if (c.failed()) return Error{c.error()};
  return std::shared_ptr<const Route>(std::move(r));
}

Result<std::shared_ptr<const Service>> parse_service(const json::value& v) {
  if (!v.is_object()) return Error{"wrong type: expected object, got " + type_name(v)};
  auto s = std::make_shared<Service>();
  Checker c(v.as_object(), "service");
  c.only({"id", "name", "desc", "labels", "create_time", "update_time", "plugins", "upstream",
          "upstream_id", "script", "enable_websocket", "hosts"});
  if (auto id = parse_id_field(c, "id", true)) s->id = *id;
  s->name = c.str("name", false, 1, 256).value_or("");
  if (const json::object* p = c.object("plugins")) s->plugins = *p;
  if (const json::value* up = c.get("upstream")) {
    auto u = parse_upstream(*up, true);
    if (!u) c.fail("property \"upstream\" validation failed: " + u.error());
    else s->upstream = *u;
  }
  if (auto id = parse_id_field(c, "upstream_id", false)) s->upstream_id = *id;
  s->enable_websocket = c.boolean("enable_websocket");
  if (auto hs = c.str_array("hosts", 1)) {
    for (const auto& h : *hs)
      if (!valid_host(h)) c.fail("invalid host " + h);
    s->hosts = *hs;
  }
  if (c.has("script") && !c.failed()) c.fail("script (Lua) is not supported by Holdfast");
  if (c.failed()) return Error{c.error()};
  return std::shared_ptr<const Service>(std::move(s));
}

namespace {
Result<std::shared_ptr<const PluginSet>> parse_plugin_set(const json::value& v, bool allow_meta) {
  if (!v.is_object()) return Error{"wrong type: expected object, got " + type_name(v)};
  auto s = std::make_shared<PluginSet>();
  Checker c(v.as_object(), "plugin set");
  if (allow_meta) c.only({"id", "plugins", "name", "desc", "labels", "create_time", "update_time"});
  else c.only({"id", "plugins", "create_time", "update_time"});
  if (auto id = parse_id_field(c, "id", true)) s->id = *id;
  if (const json::object* p = c.object("plugins", true)) s->plugins = *p;
  if (c.failed()) return Error{c.error()};
  return std::shared_ptr<const PluginSet>(std::move(s));
}
}  // namespace

Result<std::shared_ptr<const PluginSet>> parse_plugin_config(const json::value& v) {
  return parse_plugin_set(v, true);
}

Result<std::shared_ptr<const PluginSet>> parse_global_rule(const json::value& v) {
  return parse_plugin_set(v, false);
}

Result<std::shared_ptr<const Consumer>> parse_consumer(const json::value& v) {
  if (!v.is_object()) return Error{"wrong type: expected object, got " + type_name(v)};
  auto s = std::make_shared<Consumer>();
  Checker c(v.as_object(), "consumer");
  c.only({"username", "id", "desc", "labels", "group_id", "plugins", "create_time", "update_time"});
  if (auto u = c.str("username", true, 1, 256)) {
    for (char ch : *u) {
      bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
      if (!ok) { c.fail("property \"username\" validation failed: failed to match pattern \"^[a-zA-Z0-9_\\-]+$\" with \"" + *u + "\""); break; }
    }
    s->username = *u;
    s->id = *u;
  }
  if (auto g = parse_id_field(c, "group_id", false)) s->group_id = *g;
  if (const json::object* p = c.object("plugins")) s->plugins = *p;
  if (const json::object* l = c.object("labels")) {
    if (auto it = l->find("custom_id"); it != l->end() && it->value().is_string())
      s->custom_id = std::string(it->value().as_string());
  }
  if (c.failed()) return Error{c.error()};
  return std::shared_ptr<const Consumer>(std::move(s));
}

Result<std::shared_ptr<const Consumer>> parse_credential(const json::value& v, const std::string& username,
                                                         const std::string& cred_id) {
  if (!v.is_object()) return Error{"wrong type: expected object, got " + type_name(v)};
  auto s = std::make_shared<Consumer>();
  Checker c(v.as_object(), "credential");
  c.only({"id", "name", "desc", "labels", "plugins", "create_time", "update_time"});
  s->username = username;
  s->credential_id = cred_id;
  s->id = username + "/credentials/" + cred_id;
  if (const json::object* p = c.object("plugins")) {
    if (p->size() > 1) c.fail("property \"plugins\" validation failed: expect object to have at most 1 properties");
    s->plugins = *p;
  }
  if (c.failed()) return Error{c.error()};
  return std::shared_ptr<const Consumer>(std::move(s));
}

namespace {
void upstream_ignored(const json::object& u, const std::string& at, std::vector<std::string>& out) {
  for (const char* k : {"service_name", "discovery_type", "discovery_args"})
    if (u.contains(k))
      out.push_back(fmt::format("{}{} is not implemented by Holdfast (no service discovery: without nodes the "
                                "upstream answers 503, as APISIX without that discovery)", at, k));
  const json::value* checks = u.if_contains("checks");
  const json::value* active = checks && checks->is_object() ? checks->as_object().if_contains("active") : nullptr;
  if (active && active->is_object() && active->as_object().contains("concurrency"))
    out.push_back(fmt::format("{}checks.active.concurrency is not implemented by Holdfast (ignored: it changes "
                              "how many probes run at once, not their results)", at));
}
}  // namespace

std::vector<std::string> ignored_keys(std::string_view kind, const json::object& value) {
  std::vector<std::string> out;
  if (kind == "upstream") {
    upstream_ignored(value, "", out);
  } else if (kind == "route" || kind == "service") {
    if (const json::value* u = value.if_contains("upstream"); u && u->is_object())
      upstream_ignored(u->as_object(), "upstream.", out);
  }
  return out;
}

}  // namespace holdfast::model
