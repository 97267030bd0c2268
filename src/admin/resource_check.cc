#include "admin/resource_check.h"

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <boost/json.hpp>
#include <cctype>
#include <memory>

#include "core/secret_ref.h"
#include "model/json_check.h"
#include "model/resources.h"
#include "plugins/plugin.h"
#include "router/expr.h"

namespace holdfast::admin {
namespace json = boost::json;
using model::Checker;

namespace {

const ResourceDef kResources[] = {
    // name             kind              has_id post   patch  timestamps
    {"routes",          "route",          true,  true,  true,  true},
    {"services",        "service",        true,  true,  true,  true},
    {"upstreams",       "upstream",       true,  true,  true,  true},
    {"consumers",       "consumer",       false, false, false, true},
    {"credentials",     "credential",     true,  false, false, true},
    {"ssls",            "ssl",            true,  true,  true,  true},
    {"plugin_configs",  "plugin config",  true,  true,  true,  true},
    {"global_rules",    "global rule",    true,  true,  true,  true},
    {"consumer_groups", "consumer group", true,  true,  true,  true},
    {"plugin_metadata", "plugin_metadata", false, false, false, false},
    {"protos",          "proto",          true,  true,  true,  true},
    {"secrets",         "secret",         true,  false, true,  true},
    {"stream_routes",   "stream route",   true,  true,  true,  true},
};

const std::string kInvalid = "invalid configuration: ";

std::string msg_of(const Checker& c) { return kInvalid + c.error(); }

// labels: an object of strings, 1-256 characters without whitespace.
void check_labels(Checker& c) {
  const json::object* labels = c.object("labels");
  if (!labels) return;
  for (const auto& kv : *labels) {
    const json::value& v = kv.value();
    bool ok = v.is_string() && !v.as_string().empty() && v.as_string().size() <= 256;
    if (ok)
      for (char ch : v.as_string())
        if (std::isspace(static_cast<unsigned char>(ch))) { ok = false; break; }
    if (!ok) {
      c.fail(fmt::format("property \"labels\" validation failed: failed to validate {} (matching \".*\"): "
                         "failed to match pattern \"^\\\\S+$\" with {}",
                         std::string(kv.key()), json::serialize(v)));
      return;
    }
  }
}

// name (1-256), desc (<= 256), labels, timestamps: shared by most resources.
void check_common(Checker& c) {
  c.str("name", false, 1, 256);
  c.str("desc", false, 0, 256);
  check_labels(c);
  c.integer("create_time");
  c.integer("update_time");
}

// Parses PEM text with OpenSSL, as apisix/ssl.lua `validate` does.
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};

std::string openssl_reason() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (!e) return "no PEM data";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

std::string check_pem_cert(const std::string& pem) {
  ERR_clear_error();
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509* x = bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr;
  if (!x) return "failed to parse cert: " + openssl_reason();
  X509_free(x);
  return {};
}

std::string check_pem_key(const std::string& pem) {
  ERR_clear_error();
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  // A null password callback with an empty password: encrypted PEMs fail
  // instead of prompting on the terminal.
  EVP_PKEY* k = bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, const_cast<char*>("")) : nullptr;
  if (!k) return "failed to parse key: " + openssl_reason();
  EVP_PKEY_free(k);
  return {};
}

std::optional<std::string> id_field(Checker& c, const char* key) {
  const json::value* v = c.get(key);
  if (!v) return std::nullopt;
  auto id = model::parse_id(*v);
  if (!id) {
    c.fail(fmt::format("property \"{}\" validation failed: object matches none of the required", key));
    return std::nullopt;
  }
  return *id;
}

// Upstream `tls`: model::parse_upstream has already checked its shape (cert
// and key together, client_cert_id excluding both); what the Admin API adds
// is that the PEMs parse and that the SSL object it names exists.
std::string check_upstream_tls(const json::object& up, std::vector<Reference>& refs) {
  auto it = up.find("tls");
  if (it == up.end() || !it->value().is_object()) return {};
  const json::object& t = it->value().as_object();
  auto text = [&](const char* k) -> std::optional<std::string> {
    auto f = t.find(k);
    if (f == t.end() || !f->value().is_string()) return std::nullopt;
    return std::string(f->value().as_string());
  };
  if (auto cert = text("client_cert")) {
    if (auto e = check_pem_cert(*cert); !e.empty()) return e;
    if (auto key = text("client_key"))
      if (auto e = check_pem_key(*key); !e.empty()) return e;
  }
  if (auto f = t.find("client_cert_id"); f != t.end())
    if (auto id = model::parse_id(f->value())) refs.push_back({"ssls", *id, "ssl"});
  return {};
}

// Plugins of routes, services, plugin configs, global rules and groups.
std::string check_plugins(const json::object& value, const CheckOptions& opts, const std::string& scope) {
  auto it = value.find("plugins");
  if (it == value.end() || !it->value().is_object()) return {};
  auto chain = plugins::compile_chain(it->value().as_object(), opts.enabled_plugins, scope, opts.warnings);
  if (!chain) return chain.error();
  return {};
}

bool enabled(const CheckOptions& opts, std::string_view name) {
  if (opts.enabled_plugins.empty()) return true;
  for (const auto& p : opts.enabled_plugins)
    if (p == name) return true;
  return false;
}

// Consumer and credential plugins: auth plugins follow their consumer
// schema, the others compile as usual. The error is APISIX's
// `invalid plugins configuration: ...`.
std::string check_consumer_plugins(const json::object& value, const CheckOptions& opts, const std::string& scope,
                                   bool auth_only) {
  auto it = value.find("plugins");
  if (it == value.end() || !it->value().is_object()) return {};
  json::object others;
  for (const auto& kv : it->value().as_object()) {
    std::string name(kv.key());
    const plugins::PluginDef* def = plugins::find_plugin(name);
    if (!def || !enabled(opts, name)) return fmt::format("invalid plugins configuration: unknown plugin [{}]", name);
    if (!def->is_auth) {
      if (auth_only) return "only supports auth type plugins in consumer credential";
      others[kv.key()] = kv.value();
      continue;
    }
    // APISIX's check_single_plugin_schema, before any schema.
    if (!kv.value().is_object())
      return fmt::format("invalid plugins configuration: invalid plugin conf {} for plugin [{}]",
                         json::serialize(kv.value()), name);
    if (auto st = plugins::check_consumer_conf(*def, kv.value().as_object(), scope, opts.warnings); !st)
      return fmt::format("invalid plugins configuration: failed to check the configuration of plugin {} err: {}",
                         name, st.error());
  }
  auto chain = plugins::compile_chain(others, opts.enabled_plugins, scope, opts.warnings);
  if (!chain) return "invalid plugins configuration: " + chain.error();
  return {};
}

std::string check_vars(const json::object& value) {
  auto it = value.find("vars");
  if (it == value.end()) return {};
  auto ex = router::Expr::compile(it->value());
  if (!ex) return ex.error();
  return {};
}

void add_ref(std::vector<Reference>& refs, const json::object& value, const char* field, const char* dir,
             const char* label) {
  auto it = value.find(field);
  if (it == value.end()) return;
  auto id = model::parse_id(it->value());
  if (id) refs.push_back({dir, *id, label});
}

std::string id_of(const json::object& value) {
  auto it = value.find("id");
  if (it == value.end()) return {};
  return it->value().is_string() ? std::string(it->value().as_string()) : json::serialize(it->value());
}

// The upstream of a route or service: an embedded one's TLS client
// certificate, and the reference of `upstream_id`.
std::string check_upstream_of(const json::object& v, std::vector<Reference>& refs) {
  if (auto u = v.find("upstream"); u != v.end() && u->value().is_object())
    if (auto e = check_upstream_tls(u->value().as_object(), refs); !e.empty()) return e;
  add_ref(refs, v, "upstream_id", "upstreams", "upstream");
  return {};
}

// --- per resource -------------------------------------------------------

std::string check_route(const json::object& v, const CheckOptions& opts, std::vector<Reference>& refs) {
  // APISIX checks these two before the schema, without the prefix.
  if (v.contains("host") && v.contains("hosts")) return "only one of host or hosts is allowed";
  if (v.contains("remote_addr") && v.contains("remote_addrs")) return "only one of remote_addr or remote_addrs is allowed";
  auto r = model::parse_route(v);
  if (!r) return kInvalid + r.error();
  Checker c(v, "route");
  check_common(c);
  if (c.failed()) return msg_of(c);
  if (auto e = check_upstream_of(v, refs); !e.empty()) return e;
  add_ref(refs, v, "service_id", "services", "service");
  add_ref(refs, v, "plugin_config_id", "plugin_configs", "plugin config");
  if (auto e = check_plugins(v, opts, "routes/" + id_of(v)); !e.empty()) return e;
  return check_vars(v);
}

std::string check_service(const json::object& v, const CheckOptions& opts, std::vector<Reference>& refs) {
  auto s = model::parse_service(v);
  if (!s) return kInvalid + s.error();
  Checker c(v, "service");
  check_common(c);
  if (c.failed()) return msg_of(c);
  if (auto e = check_upstream_of(v, refs); !e.empty()) return e;
  return check_plugins(v, opts, "services/" + id_of(v));
}

std::string check_upstream(const json::object& v, std::vector<Reference>& refs) {
  auto u = model::parse_upstream(v, false);
  if (!u) return kInvalid + u.error();
  Checker c(v, "upstream");
  check_common(c);
  if (c.failed()) return msg_of(c);
  return check_upstream_tls(v, refs);
}

std::string check_consumer(const json::object& v, const CheckOptions& opts, std::vector<Reference>& refs) {
  auto s = model::parse_consumer(v);
  if (!s) return kInvalid + s.error();
  Checker c(v, "consumer");
  c.str("desc", false, 0, 256);
  check_labels(c);
  if (c.failed()) return msg_of(c);
  add_ref(refs, v, "group_id", "consumer_groups", "consumer group");
  return check_consumer_plugins(v, opts, "consumers/" + (*s)->username, false);
}

std::string check_credential(const json::object& v, const CheckOptions& opts) {
  auto s = model::parse_credential(v, "", id_of(v));
  if (!s) return kInvalid + s.error();
  Checker c(v, "credential");
  if (c.has("id") && !model::parse_id(*c.get("id")))
    c.fail("property \"id\" validation failed: object matches none of the required");
  check_common(c);
  if (c.failed()) return msg_of(c);
  return check_consumer_plugins(v, opts, "credentials/" + id_of(v), true);
}

std::string check_plugin_set(const json::object& v, const CheckOptions& opts, bool global) {
  auto s = global ? model::parse_global_rule(v) : model::parse_plugin_config(v);
  if (!s) return kInvalid + s.error();
  Checker c(v, "plugin set");
  if (!global) {
    c.str("name");  // any string (APISIX plugin_config schema)
    c.str("desc", false, 0, 256);
    check_labels(c);
  }
  if (c.failed()) return msg_of(c);
  return check_plugins(v, opts, std::string(global ? "global_rules/" : "plugin_configs/") + id_of(v));
}

std::string check_consumer_group(const json::object& v, const CheckOptions& opts) {
  Checker c(v, "consumer group");
  c.only({"id", "name", "desc", "labels", "plugins", "create_time", "update_time"});
  id_field(c, "id");
  if (!c.has("id") && !c.failed()) c.fail("property \"id\" is required");
  c.object("plugins", true);
  check_common(c);
  if (c.failed()) return msg_of(c);
  return check_plugins(v, opts, "consumer_groups/" + id_of(v));
}

// APISIX's host_def: ^\*$|^\*?[0-9a-zA-Z-._\[\]:]+$ ("*" alone serves every name).
bool valid_sni(std::string_view s) {
  if (s == "*") return true;
  if (!s.empty() && s[0] == '*') s.remove_prefix(1);
  if (s.empty()) return false;
  for (char ch : s)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '.' || ch == '_' || ch == '[' ||
          ch == ']' || ch == ':'))
      return false;
  return true;
}

std::string check_ssl(const json::object& v) {
  Checker c(v, "ssl");
  c.only({"id", "type", "cert", "key", "sni", "snis", "certs", "keys", "client", "status", "ssl_protocols", "labels",
          "create_time", "update_time", "validity_start", "validity_end"});
  id_field(c, "id");
  auto type = c.one_of("type", {"server", "client"}, "server");
  // cert/key may be secret references ($env://, resolved when a node
  // compiles the object): APISIX skips their schema and PEM checks.
  auto is_ref = [&](const char* k) {
    const json::value* x = c.get(k);
    return x && x->is_string() && secret::is_reference(x->as_string());
  };
  const bool cert_ref = is_ref("cert"), key_ref = is_ref("key");
  auto cert = cert_ref ? c.str("cert") : c.str("cert", false, 128, 64 * 1024);
  auto key = key_ref ? c.str("key") : c.str("key", false, 64, 64 * 1024);
  if (c.has("sni") && c.has("snis") && !c.failed()) c.fail("value should match only one schema, but matches both");
  std::vector<std::string> snis;
  if (auto s = c.str("sni", false, 1)) snis.push_back(*s);
  if (auto ss = c.str_array("snis", 1)) snis = *ss;
  for (const auto& s : snis)
    if (!c.failed() && !valid_sni(s))
      c.fail(fmt::format("property \"snis\" validation failed: failed to match pattern \"^\\\\*$|^\\\\*?[0-9a-zA-Z-._\\\\[\\\\]:]+$\" with \"{}\"", s));
  auto certs = c.str_array("certs");
  auto keys = c.str_array("keys");
  c.integer("status", false, 0, 1);
  if (auto protos = c.str_array("ssl_protocols")) {
    if (protos->size() > 3 && !c.failed()) c.fail("property \"ssl_protocols\" validation failed: expect array to have at most 3 items");
    for (const auto& p : *protos)
      if (!c.failed() && p != "TLSv1.1" && p != "TLSv1.2" && p != "TLSv1.3")
        c.fail("property \"ssl_protocols\" validation failed: matches none of the enum values");
  }
  if (const json::object* client = c.object("client")) {
    Checker cc(*client, "client");
    cc.only({"ca", "depth", "skip_mtls_uri_regex"});
    cc.str("ca", true, 128, 64 * 1024);
    cc.integer("depth", false, 0);
    cc.str_array("skip_mtls_uri_regex", 1);
    if (cc.failed()) c.fail("property \"client\" validation failed: " + cc.error());
  }
  c.integer("validity_start");
  c.integer("validity_end");
  check_labels(c);
  c.integer("create_time");
  c.integer("update_time");
  if (!c.failed() && !cert) c.fail("property \"cert\" is required");
  if (!c.failed() && !key) c.fail("property \"key\" is required");
  if (!c.failed() && type == "server" && snis.empty()) c.fail("property \"snis\" is required");
  if (c.failed()) return msg_of(c);
  if (!cert_ref && !key_ref) {
    if (auto e = check_pem_cert(*cert); !e.empty()) return e;
    if (auto e = check_pem_key(*key); !e.empty()) return e;
  }
  if (certs || keys) {
    size_t nc = certs ? certs->size() : 0, nk = keys ? keys->size() : 0;
    if (nc != nk) return "mismatched number of certs and keys";
    for (size_t i = 0; i < nc; ++i) {
      if (secret::is_reference((*certs)[i]) || secret::is_reference((*keys)[i])) continue;
      if (auto e = check_pem_cert((*certs)[i]); !e.empty()) return e;
      if (auto e = check_pem_key((*keys)[i]); !e.empty()) return e;
    }
  }
  return {};
}

std::string check_proto(const json::object& v) {
  Checker c(v, "proto");
  c.only({"id", "name", "desc", "labels", "content", "create_time", "update_time"});
  id_field(c, "id");
  c.str("content", true, 1, 1024 * 1024);
  check_common(c);
  if (c.failed()) return msg_of(c);
  return {};
}

std::string check_secret(const json::object& v, const std::string& manager) {
  Checker c(v, "secret");
  if (manager == "vault") {
    c.only({"id", "uri", "prefix", "token", "namespace", "create_time", "update_time"});
    auto uri = c.str("uri", true, 1);
    c.str("prefix", true);
    c.str("token", true, 1);
    c.str("namespace");
    if (uri && !c.failed() && uri->find("://") == std::string::npos)
      c.fail(fmt::format("property \"uri\" validation failed: failed to match pattern "
                         "\"^[^\\\\/]+:\\\\/\\\\/([\\\\da-zA-Z.-]+|\\\\[[\\\\da-fA-F:]+\\\\])(:\\\\d+)?\" with \"{}\"", *uri));
  } else if (manager == "aws") {
    c.only({"id", "access_key_id", "secret_access_key", "session_token", "region", "endpoint_url", "create_time",
            "update_time"});
    c.str("access_key_id", true, 1);
    c.str("secret_access_key", true, 1);
    c.str("session_token");
    c.str("region");
    c.str("endpoint_url");
  } else if (manager == "gcp") {
    c.only({"id", "auth_config", "auth_file", "ssl_verify", "create_time", "update_time"});
    c.object("auth_config");
    c.str("auth_file", false, 1);
    c.boolean("ssl_verify");
    if (!c.failed() && c.has("auth_config") == c.has("auth_file"))
      c.fail(std::string("value should match only one schema, but matches ") + (c.has("auth_file") ? "both" : "none"));
  } else {
    return "invalid secret manager: " + manager;
  }
  c.integer("create_time");
  c.integer("update_time");
  if (c.failed()) return msg_of(c);
  return {};
}

std::string check_stream_route(const json::object& v, std::vector<Reference>& refs) {
  Checker c(v, "stream route");
  c.only({"id", "name", "desc", "labels", "remote_addr", "server_addr", "server_port", "sni", "upstream", "upstream_id",
          "service_id", "plugins", "protocol", "create_time", "update_time"});
  id_field(c, "id");
  for (const char* f : {"remote_addr", "server_addr"})
    if (auto a = c.str(f); a && !c.failed() && !model::valid_ip_or_cidr(*a))
      c.fail(fmt::format("property \"{}\" validation failed: object matches none of the required", f));
  c.integer("server_port", false, 1, 65535);
  if (auto s = c.str("sni"); s && !c.failed() && !model::valid_host(*s))
    c.fail("property \"sni\" validation failed: failed to match pattern");
  if (const json::value* up = c.get("upstream"); up && !c.failed()) {
    auto u = model::parse_upstream(*up, true);
    if (!u) c.fail("property \"upstream\" validation failed: " + u.error());
  }
  id_field(c, "upstream_id");
  id_field(c, "service_id");
  // Stream plugins run in L4 proxies, which Holdfast does not have: they are
  // stored, not compiled; their shape is still checked.
  if (const json::object* p = c.object("plugins"))
    for (const auto& kv : *p)
      if (!c.failed() && !kv.value().is_object())
        c.fail(fmt::format("property \"plugins\" validation failed: plugin {} must be an object", std::string(kv.key())));
  if (const json::object* proto = c.object("protocol")) {
    Checker pc(*proto, "protocol");
    pc.str("name", true, 1);
    if (pc.failed()) c.fail("property \"protocol\" validation failed: " + pc.error());
  }
  check_common(c);
  if (c.failed()) return msg_of(c);
  if (auto e = check_upstream_of(v, refs); !e.empty()) return e;
  add_ref(refs, v, "service_id", "services", "service");
  return {};
}

std::string check_plugin_metadata(const json::object& v, const CheckOptions& opts) {
  // The id is the plugin name; the body follows that plugin's metadata
  // schema (any object for a plugin that reads no metadata, as APISIX).
  auto m = plugins::compile_metadata(v, opts.enabled_plugins, opts.warnings);
  if (!m) return m.error();
  return {};
}

}  // namespace

const ResourceDef* find_resource(std::string_view name) {
  for (const auto& r : kResources)
    if (name == r.name) return &r;
  return nullptr;
}

Result<std::vector<Reference>> check_resource(const ResourceDef& def, const json::object& value,
                                              const CheckOptions& opts) {
  std::vector<Reference> refs;
  std::string_view n = def.name;
  std::string err;
  if (n == "routes") err = check_route(value, opts, refs);
  else if (n == "services") err = check_service(value, opts, refs);
  else if (n == "upstreams") err = check_upstream(value, refs);
  else if (n == "consumers") err = check_consumer(value, opts, refs);
  else if (n == "credentials") err = check_credential(value, opts);
  else if (n == "ssls") err = check_ssl(value);
  else if (n == "plugin_configs") err = check_plugin_set(value, opts, false);
  else if (n == "global_rules") err = check_plugin_set(value, opts, true);
  else if (n == "consumer_groups") err = check_consumer_group(value, opts);
  else if (n == "plugin_metadata") err = check_plugin_metadata(value, opts);
  else if (n == "protos") err = check_proto(value);
  else if (n == "secrets") err = check_secret(value, opts.secret_manager);
  else if (n == "stream_routes") err = check_stream_route(value, refs);
  if (!err.empty()) return Error{err};
  if (opts.warnings)
    for (auto& w : model::ignored_keys(def.kind, value))
      opts.warnings->push_back(fmt::format("{}/{}: {}", def.name, id_of(value), w));
  return refs;
}

std::vector<ReferenceRule> delete_rules(const ResourceDef& def) {
  std::string_view n = def.name;
  if (n == "upstreams")
    return {{"routes", "upstream_id", "route", "can not delete this upstream", true},
            {"services", "upstream_id", "service", "can not delete this upstream", true},
            {"stream_routes", "upstream_id", "stream_route", "can not delete this upstream"},
            {"plugin_configs", nullptr, "plugin_config", "can not delete this upstream", true},
            {"consumers", nullptr, "consumer", "can not delete this upstream", true},
            {"consumer_groups", nullptr, "consumer_group", "can not delete this upstream", true},
            {"global_rules", nullptr, "global_rules", "can not delete this upstream", true}};
  if (n == "services")
    return {{"routes", "service_id", "route", "can not delete this service directly"},
            {"stream_routes", "service_id", "stream_route", "can not delete this service directly"}};
  if (n == "plugin_configs") return {{"routes", "plugin_config_id", "route", "can not delete this plugin config"}};
  if (n == "consumer_groups") return {{"consumers", "group_id", "consumer", "can not delete this consumer group"}};
  return {};
}

const std::vector<AuthKeyField>& auth_key_fields() {
  static const std::vector<AuthKeyField> f = {
      {"key-auth", "key"}, {"basic-auth", "username"}, {"jwt-auth", "key"}, {"hmac-auth", "key_id"}};
  return f;
}

}  // namespace holdfast::admin
