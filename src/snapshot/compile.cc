#include <fmt/format.h>
#include <fmt/ranges.h>

#include <boost/json.hpp>
#include <algorithm>
#include <functional>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "snapshot/snapshot.h"
#include "core/log.h"
#include "core/secret_ref.h"
#include "dns/resolver.h"
#include "plugins/traffic_split.h"
#include "tls/client_context.h"

namespace holdfast::snapshot {
namespace json = boost::json;

namespace {

std::string item_id(const json::value& v, size_t index) {
  if (v.is_object()) {
    const auto& o = v.as_object();
    if (auto it = o.find("id"); it != o.end()) {
      if (it->value().is_string()) return std::string(it->value().as_string());
      if (it->value().is_int64()) return std::to_string(it->value().as_int64());
    }
    if (auto it = o.find("username"); it != o.end() && it->value().is_string())
      return std::string(it->value().as_string());
  }
  return "arr_" + std::to_string(index + 1);
}

// Standalone files may omit ids (APISIX uses arr_<n>); give them one so the
// schema check that requires an id passes.
json::value with_id(const json::value& v, const std::string& id) {
  if (!v.is_object() || v.as_object().contains("id")) return v;
  json::value copy = v;
  copy.as_object()["id"] = id;
  return copy;
}

const json::array* section(const json::object& doc, const char* name, std::string& err) {
  auto it = doc.find(name);
  if (it == doc.end() || it->value().is_null()) return nullptr;
  if (!it->value().is_array()) {
    err = fmt::format("{}: expected an array", name);
    return nullptr;
  }
  return &it->value().as_array();
}

// Health is kept across reloads only while nodes and their addresses stay the
// same: a name that now points elsewhere is a different server.
std::string node_signature(const CompiledUpstream& u) {
  std::string s = u.conf->type;
  for (size_t i = 0; i < u.conf->nodes.size(); ++i) {
    const auto& n = u.conf->nodes[i];
    s += fmt::format("|{}:{}:{}:{}", n.host, n.port, n.weight, n.priority);
    if (i < u.endpoints.size() && u.endpoints[i]) s += "@" + u.endpoints[i]->address().to_string();
  }
  return s;
}

// Merges plugin objects: later maps override earlier ones (same plugin name).
json::object merge_plugins(std::initializer_list<const json::object*> layers) {
  json::object out;
  for (const json::object* l : layers) {
    if (!l) continue;
    for (const auto& kv : *l) out[kv.key()] = kv.value();
  }
  return out;
}

// The document's enabled-plugin list ([{"name": ..., "stream": ...}], from
// etcd's <prefix>/plugins or a standalone file's `plugins:`) replaces
// config.yaml's, as in APISIX. Stream plugins and names this build does not
// have are left out with a log line.
std::vector<std::string> listed_plugins(const json::array& list, const Snapshot* previous) {
  std::vector<std::string> names;
  std::vector<std::string> unknown;
  for (const auto& item : list) {
    const json::object* o = item.if_object();
    const json::value* name = o ? o->if_contains("name") : nullptr;
    if (!name || !name->is_string()) continue;
    if (const json::value* st = o->if_contains("stream"); st && st->is_bool() && st->as_bool()) continue;
    std::string n(name->as_string());
    if (plugins::find_plugin(n)) names.push_back(std::move(n));
    else unknown.push_back(std::move(n));
  }
  if (!previous || previous->plugin_list != names) {
    log::info("enabled plugins from the configuration's plugin list: {}", names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", ")));
    if (!unknown.empty()) log::warn("plugin list: unknown plugins ignored: {}", fmt::format("{}", fmt::join(unknown, ", ")));
  }
  return names;
}

// SSL objects whose cert/key (certs/keys) are secret references, resolved
// into `out` (as APISIX's fetch_secrets on SSL objects); an object with a
// reference that cannot be resolved is left out, with a log line.
const json::array* resolve_ssls(const json::array& ssls, json::array& out, size_t& unresolved) {
  for (size_t i = 0; i < ssls.size(); ++i) {
    json::value v = ssls[i];
    if (json::object* o = v.if_object()) {
      Status st;
      for (const char* field : {"cert", "key", "certs", "keys"})
        if (json::value* f = o->if_contains(field); f && st) st = secret::resolve(*f);
      if (!st) {
        log::error("ssl {}: skipped: {}", item_id(ssls[i], i), st.error());
        ++unresolved;
        continue;
      }
    }
    out.push_back(std::move(v));
  }
  return &out;
}

// plugin_metadata items (`id` = the plugin name), each checked against its
// plugin's metadata schema. One of an unknown or disabled plugin is ignored
// (APISIX does so silently; here with a warning).
void compile_metadata(const json::array& items, const std::vector<std::string>& enabled, Snapshot& snap,
                      const std::function<void(const std::string&, const std::string&)>& skip) {
  for (size_t i = 0; i < items.size(); ++i) {
    std::string id = item_id(items[i], i);
    if (!items[i].is_object()) { skip(id, "expected an object"); continue; }
    auto m = plugins::compile_metadata(items[i].as_object(), enabled, &snap.warnings);
    if (!m && m.error() == "invalid plugin name") {
      log::warn("plugin_metadata id={}: no such plugin enabled, ignored", id);
      continue;
    }
    if (!m) { skip(id, m.error()); continue; }
    if (snap.metadata.find(id)) { log::warn("plugin_metadata id={}: duplicate, the first one is used", id); continue; }
    if (m->second) snap.metadata.entries.emplace_back(m->first, std::move(m->second));
  }
}

}  // namespace

Result<std::shared_ptr<Snapshot>> compile_snapshot(const json::value& docv, const CompileOptions& in_opts) {
  if (!docv.is_object()) return Error{"configuration must be an object"};
  const json::object& doc = docv.as_object();
  auto snap = std::make_shared<Snapshot>();
  std::string err;
  CompileOptions opts = in_opts;
  if (const json::value* list = doc.if_contains("plugins"); list && list->is_array()) {
    snap->plugin_list = listed_plugins(list->as_array(), opts.previous);
    opts.enabled_plugins = snap->plugin_list;
    // compile_chain reads an empty list as "every plugin": a list that
    // enables nothing keeps one name that no plugin has.
    if (opts.enabled_plugins.empty()) opts.enabled_plugins.push_back("(none)");
  }

  auto skip = [&](const char* type, const std::string& id, const std::string& why) {
    log::warn("skipping invalid {} id={}: {}", type, id, why);
    // The document's section: the type's plural, except plugin_metadata.
    const std::string_view plural = std::string_view(type) == "plugin_metadata" ? "" : "s";
    if (snap->skipped++ == 0) snap->first_error = fmt::format("{}{}[id={}]: {}", type, plural, id, why);
  };
  // Secret references in plugin configurations are resolved into the
  // snapshot only (the document keeps them). One that cannot be resolved
  // leaves out the object holding it: fail closed, where APISIX would use
  // the literal text.
  auto resolve = [&](json::object& plugins, const char* type, const std::string& id) {
    if (!secret::has_reference(plugins)) return true;
    if (auto st = secret::resolve_plugins(plugins); !st) {
      log::error("{} id={}: rejected: {}", type, id, st.error());
      ++snap->unresolved;
      return false;
    }
    return true;
  };
  if (const json::array* arr = section(doc, "plugin_metadata", err))
    compile_metadata(*arr, opts.enabled_plugins, *snap, [&](const std::string& id, const std::string& why) { skip("plugin_metadata", id, why); });
  if (!err.empty()) return Error{err};

  // First: upstreams' tls.client_cert_id refers to them.
  {
    tls::CertTable::Options to;
    // Unchanged SSL objects are taken over, parsed keys and all.
    if (opts.previous) to.previous = opts.previous->certificates.get();
    // Keys still encrypted (the standalone file; etcd and S3 documents are
    // decrypted on arrival) are decrypted here.
    to.keyring = opts.keyring;
    const json::array* arr = section(doc, "ssls", err);
    if (!err.empty()) return Error{err};
    json::array resolved;
    if (arr && secret::has_reference(*arr)) arr = resolve_ssls(*arr, resolved, snap->unresolved);
    snap->certificates = tls::CertTable::build(arr, to);
  }

  // The client TLS context of an upstream, shared by identity and reused
  // from the previous snapshot (loading a CA store is not free).
  auto client_context = [&](const tls::ClientOptions& co) -> Result<std::shared_ptr<tls::ClientContext>> {
    const std::string id = tls::client_identity(co);
    if (auto it = snap->client_contexts.find(id); it != snap->client_contexts.end()) return it->second;
    std::shared_ptr<tls::ClientContext> c;
    if (opts.previous)
      if (auto it = opts.previous->client_contexts.find(id); it != opts.previous->client_contexts.end()) c = it->second;
    if (!c) {
      auto made = tls::make_client_context(co);
      if (!made) return Error{made.error()};
      c = *made;
    }
    snap->client_contexts[id] = c;
    return c;
  };
  auto upstream_tls = [&](CompiledUpstream& cu) {
    const model::Upstream& u = *cu.conf;
    const bool https = u.scheme == "https" || u.scheme == "grpcs";  // grpcs: TLS with ALPN h2 (proxy/upstream_h2.cc)
    const bool check_https = u.checks && u.checks->active && u.checks->type == "https";
    if (!https && !check_https) return;
    tls::ClientOptions co;
    co.verify = u.tls.verify;
    co.trusted_certificate = opts.trusted_certificate;
    std::optional<tls::Certificate> own;
    if (!u.tls.client_cert.empty()) {
      // etcd sources decrypt it already; a standalone file may not have.
      auto c = tls::parse_certificate(u.tls.client_cert, u.tls.client_key, opts.keyring);
      if (!c) { cu.tls_error = c.error(); return; }
      own = std::move(*c);
      co.client = &*own;
      unsigned char md[32];
      unsigned int n = 0;
      X509_digest(own->leaf.get(), EVP_sha256(), md, &n);
      co.client_identity = "pem:";
      for (unsigned i = 0; i < 8 && i < n; ++i) co.client_identity += fmt::format("{:02x}", unsigned{md[i]});
    } else if (!u.tls.client_cert_id.empty()) {
      const tls::SslObject* o = snap->certificates->find_id(u.tls.client_cert_id);
      if (!o || o->certificates.empty()) { cu.tls_error = "tls.client_cert_id: no SSL object " + u.tls.client_cert_id; return; }
      if (o->server) { cu.tls_error = "tls.client_cert_id: SSL object " + u.tls.client_cert_id + " is not of type client"; return; }
      co.client = &o->certificates.front();
      co.client_identity = "ssl:" + o->id + ":";
      for (unsigned i = 0; i < 8; ++i) co.client_identity += fmt::format("{:02x}", unsigned{o->digest[i]});
    }
    if (https) {
      auto c = client_context(co);
      if (!c) { cu.tls_error = c.error(); return; }
      cu.tls = *c;
    }
    if (check_https) {
      // APISIX's checker shows no client certificate; it verifies unless told not to.
      tls::ClientOptions cc;
      cc.verify = u.checks->https_verify_certificate;
      cc.trusted_certificate = opts.trusted_certificate;
      auto c = client_context(cc);
      if (c) cu.check_tls = *c;
      else log::warn("upstream {}: https health checks: {}", cu.key, c.error());
    }
  };

  std::vector<std::string> dns_names;
  // Health state survives reloads when an upstream's nodes are unchanged.
  std::unordered_map<std::string, std::pair<std::string, std::shared_ptr<upstream::NodeHealth[]>>> prev_health;
  if (opts.previous) {
    for (const auto& [k, u] : opts.previous->upstreams)
      prev_health[k] = {node_signature(*u), u->balancer->health_table()};
    for (const auto& r : opts.previous->routes)
      if (r.upstream) prev_health.emplace(r.upstream->key, std::make_pair(node_signature(*r.upstream), r.upstream->balancer->health_table()));
    for (const auto& u : opts.previous->split_upstreams)
      prev_health.emplace(u->key, std::make_pair(node_signature(*u), u->balancer->health_table()));
  }
  auto make_upstream = [&](const std::string& key, std::shared_ptr<const model::Upstream> conf) {
    auto cu = std::make_shared<CompiledUpstream>();
    cu->key = key;
    cu->conf = conf;
    cu->balancer = std::make_unique<upstream::Balancer>(conf, opts.workers);
    for (const auto& n : conf->nodes) {
      boost::system::error_code ec;
      auto literal = boost::asio::ip::make_address(n.host, ec);
      if (!ec) {
        cu->endpoints.emplace_back(boost::asio::ip::tcp::endpoint(literal, n.port));
        cu->node_keys.push_back(fmt::format("{}:{}", n.host, n.port));
        continue;
      }
      dns_names.push_back(n.host);
      std::optional<dns::Addresses> addrs;
      if (opts.resolver) addrs = opts.resolver->lookup(n.host);
      if (addrs && !addrs->empty()) {
        cu->endpoints.emplace_back(boost::asio::ip::tcp::endpoint(addrs->front(), n.port));
        // Per address, so that a connection to the old address is never
        // reused once the name points elsewhere.
        cu->node_keys.push_back(fmt::format("{}:{}@{}", n.host, n.port, addrs->front().to_string()));
      } else {
        cu->endpoints.emplace_back(std::nullopt);
        cu->node_keys.push_back(fmt::format("{}:{}", n.host, n.port));
      }
    }
    if (auto it = prev_health.find(key); it != prev_health.end() && it->second.first == node_signature(*cu))
      cu->balancer->set_health(it->second.second);
    upstream_tls(*cu);
    if (!cu->tls_error.empty()) log::error("upstream {}: {}", key, cu->tls_error);
    return cu;
  };

  // traffic-split's weighted upstreams: a reference is the snapshot's
  // upstream (it follows that upstream's updates and health); an inline one
  // is compiled here, once, as a route's own. A reference to no upstream is
  // logged; APISIX answers 500 to the requests that reach its rule.
  auto bind_split = [&](const plugins::Chain& chain, const std::string& scope) {
    const bool reads_body = plugins::traffic_split::bind(chain, opts.workers, [&](const plugins::traffic_split::UpstreamRef& ref) {
      const std::string field = fmt::format("rules[{}].weighted_upstreams[{}]", ref.rule + 1, ref.index + 1);
      std::shared_ptr<CompiledUpstream> cu;
      if (!ref.upstream_id.empty()) {
        if (auto it = snap->upstreams.find(ref.upstream_id); it != snap->upstreams.end()) cu = it->second;
        else log::error("{}: plugin traffic-split: {}.upstream_id: failed to fetch upstream info by upstream id: {}",
                        scope, field, ref.upstream_id);
        return cu;
      }
      cu = make_upstream(fmt::format("{}/traffic-split/{}", scope, field), ref.conf);
      snap->split_upstreams.push_back(cu);
      return cu;
    });
    if (reads_body) snap->router_reads_body = true;
  };

  // upstreams
  if (const json::array* arr = section(doc, "upstreams", err)) {
    for (size_t i = 0; i < arr->size(); ++i) {
      std::string id = item_id((*arr)[i], i);
      auto u = model::parse_upstream(with_id((*arr)[i], id), false);
      if (!u) { skip("upstream", id, u.error()); continue; }
      for (auto& w : model::ignored_keys("upstream", (*arr)[i].as_object()))
        snap->warnings.push_back(fmt::format("upstreams/{}: {}", id, w));
      snap->upstreams[id] = make_upstream("upstreams/" + id, *u);
    }
  }
  if (!err.empty()) return Error{err};

  // plugin_configs, services
  std::unordered_map<std::string, std::shared_ptr<const model::PluginSet>> plugin_configs;
  if (const json::array* arr = section(doc, "plugin_configs", err)) {
    for (size_t i = 0; i < arr->size(); ++i) {
      std::string id = item_id((*arr)[i], i);
      auto p = model::parse_plugin_config(with_id((*arr)[i], id));
      if (!p) { skip("plugin_config", id, p.error()); continue; }
      if (auto c = plugins::compile_chain((*p)->plugins, opts.enabled_plugins, "plugin_configs/" + id, &snap->warnings); !c) {
        skip("plugin_config", id, c.error());
        continue;
      }
      plugin_configs[id] = *p;
    }
  }
  std::unordered_map<std::string, std::shared_ptr<const model::Service>> services;
  std::unordered_map<std::string, std::shared_ptr<CompiledUpstream>> service_upstreams;
  if (const json::array* arr = section(doc, "services", err)) {
    for (size_t i = 0; i < arr->size(); ++i) {
      std::string id = item_id((*arr)[i], i);
      auto s = model::parse_service(with_id((*arr)[i], id));
      if (!s) { skip("service", id, s.error()); continue; }
      for (auto& w : model::ignored_keys("service", (*arr)[i].as_object()))
        snap->warnings.push_back(fmt::format("services/{}: {}", id, w));
      if (auto c = plugins::compile_chain((*s)->plugins, opts.enabled_plugins, "services/" + id, &snap->warnings); !c) {
        skip("service", id, c.error());
        continue;
      }
      services[id] = *s;
      if ((*s)->upstream) service_upstreams[id] = make_upstream("services/" + id, (*s)->upstream);
    }
  }
  if (!err.empty()) return Error{err};

  // consumers and credentials. A credential is an item whose id is
  // "<username>/credentials/<id>" (the etcd key shape); it stands for its
  // parent consumer and carries only an auth plugin.
  auto check_auth = [&](const json::object& plugins, const std::string& scope, std::string& why) {
    for (const auto& kv : plugins) {
      const plugins::PluginDef* def = plugins::find_plugin(kv.key());
      if (!def || !def->is_auth) continue;
      if (!kv.value().is_object()) { why = fmt::format("failed to check the configuration of plugin {} err: expected object", def->name); return false; }
      if (auto st = plugins::check_consumer_conf(*def, kv.value().as_object(), scope, &snap->warnings); !st) {
        why = fmt::format("failed to check the configuration of plugin {} err: {}", def->name, st.error());
        return false;
      }
    }
    return true;
  };
  // Consumer groups: their non-auth plugins join those of every consumer in
  // the group (the consumer's own win), as APISIX's merge_consumer_route.
  auto non_auth_plugins = [](const json::object& all) {
    json::object out;
    for (const auto& kv : all) {
      const plugins::PluginDef* def = plugins::find_plugin(kv.key());
      if (!def || !def->is_auth) out[kv.key()] = kv.value();
    }
    return out;
  };
  std::unordered_map<std::string, json::object> group_plugins;
  if (const json::array* arr = section(doc, "consumer_groups", err)) {
    for (size_t i = 0; i < arr->size(); ++i) {
      std::string id = item_id((*arr)[i], i);
      auto g = model::parse_plugin_config(with_id((*arr)[i], id));
      if (!g) { skip("consumer_group", id, g.error()); continue; }
      json::object plugins = (*g)->plugins;
      if (!resolve(plugins, "consumer_group", id)) continue;
      if (auto c = plugins::compile_chain(plugins, opts.enabled_plugins, "consumer_groups/" + id); !c) {
        skip("consumer_group", id, c.error());
        continue;
      }
      group_plugins[id] = non_auth_plugins(plugins);
    }
  }
  if (!err.empty()) return Error{err};
  std::vector<std::pair<std::string, const json::value*>> credentials;
  if (const json::array* arr = section(doc, "consumers", err)) {
    for (size_t i = 0; i < arr->size(); ++i) {
      std::string id = item_id((*arr)[i], i);
      if (id.find("/credentials/") != std::string::npos) {
        credentials.emplace_back(id, &(*arr)[i]);
        continue;
      }
      auto c = model::parse_consumer((*arr)[i]);
      if (!c) { skip("consumer", id, c.error()); continue; }
      if (secret::has_reference((*c)->plugins)) {
        auto copy = std::make_shared<model::Consumer>(**c);
        if (!resolve(copy->plugins, "consumer", id)) continue;
        *c = std::move(copy);
      }
      std::string why;
      if (!check_auth((*c)->plugins, "consumers/" + id, why)) { skip("consumer", id, why); continue; }
      json::object non_auth = non_auth_plugins((*c)->plugins);
      bool group_missing = false;
      if (!(*c)->group_id.empty()) {
        if (auto g = group_plugins.find((*c)->group_id); g != group_plugins.end()) {
          non_auth = merge_plugins({&g->second, &non_auth});
        } else {
          // APISIX answers 503 to its requests (init.lua); said once here.
          log::error("consumer {}: failed to fetch consumer group config by id: {}", id, (*c)->group_id);
          group_missing = true;
        }
      }
      auto chain = plugins::compile_chain(non_auth, opts.enabled_plugins, "consumers/" + id, &snap->warnings);
      if (!chain) { skip("consumer", id, chain.error()); continue; }
      auto cc = std::make_shared<plugins::Consumer>();
      cc->conf = *c;
      cc->chain = std::move(*chain);
      cc->group_missing = group_missing;
      bind_split(cc->chain, "consumers/" + id);  // credentials share this chain
      snap->consumers.by_name[(*c)->username] = cc;
    }
  }
  if (!err.empty()) return Error{err};
  for (const auto& [id, v] : credentials) {
    size_t pos = id.find("/credentials/");
    std::string username = id.substr(0, pos), cred_id = id.substr(pos + 13);
    auto parent = snap->consumers.by_name.find(username);
    if (parent == snap->consumers.by_name.end()) { skip("credential", id, "consumer " + username + " not found"); continue; }
    auto c = model::parse_credential(*v, username, cred_id);
    if (!c) { skip("credential", id, c.error()); continue; }
    if (secret::has_reference((*c)->plugins)) {
      auto copy = std::make_shared<model::Consumer>(**c);
      if (!resolve(copy->plugins, "credential", id)) continue;
      *c = std::move(copy);
    }
    std::string why;
    if (!check_auth((*c)->plugins, "credentials/" + id, why)) { skip("credential", id, why); continue; }
    // The credential authenticates as its consumer: the consumer's
    // non-auth plugins, labels and group apply; only the auth config differs.
    auto merged = std::make_shared<model::Consumer>(*parent->second->conf);
    merged->id = (*c)->id;
    merged->credential_id = cred_id;
    merged->plugins = (*c)->plugins;
    auto cc = std::make_shared<plugins::Consumer>();
    cc->conf = merged;
    cc->chain = parent->second->chain;
    cc->group_missing = parent->second->group_missing;
    snap->consumers.by_name[id] = cc;
  }

  // Every auth plugin's credentials, by the key its requests carry (an O(1)
  // lookup per request). What a plugin compiles from a consumer's config
  // (keys, decoded secrets) is built here, once per snapshot; a consumer
  // whose config cannot be compiled is left out of that plugin's index with
  // a log line naming the consumer, the plugin and the reason, which never
  // holds the secret itself.
  for (const auto& [id, cc] : snap->consumers.by_name) {
    for (const auto& kv : cc->conf->plugins) {
      const plugins::PluginDef* def = plugins::find_plugin(kv.key());
      if (!def || !def->is_auth || !def->credential_key || !kv.value().is_object()) continue;
      const auto& conf = kv.value().as_object();
      auto k = conf.find(def->credential_key);
      if (k == conf.end() || !k->value().is_string()) continue;
      plugins::CredentialHit hit{cc.get(), nullptr};
      if (def->compile_credential) {
        auto built = def->compile_credential(conf);
        if (!built) {
          log::error("consumer {}: plugin {} left out: {}", id, def->name, built.error());
          continue;
        }
        hit.credential = std::move(*built);
      }
      auto [it, inserted] = snap->consumers.by_credential[def->name].emplace(std::string(k->value().as_string()), std::move(hit));
      if (!inserted) log::warn("consumer {}: duplicate {} {}, keeping consumer {}", id, def->name, def->credential_key, it->second.consumer->conf->username);
    }
  }

  // global rules: one chain of every rule's plugins; a plugin configured in
  // more than one rule is dropped (APISIX 3.15+).
  if (const json::array* arr = section(doc, "global_rules", err)) {
    json::object merged;
    std::unordered_map<std::string, int> seen;
    for (size_t i = 0; i < arr->size(); ++i) {
      std::string id = item_id((*arr)[i], i);
      auto g = model::parse_global_rule(with_id((*arr)[i], id));
      if (!g) { skip("global_rule", id, g.error()); continue; }
      if (auto c = plugins::compile_chain((*g)->plugins, opts.enabled_plugins, "global_rules/" + id, &snap->warnings); !c) {
        skip("global_rule", id, c.error());
        continue;
      }
      json::object resolved;
      const json::object* rule = &(*g)->plugins;
      if (secret::has_reference(*rule)) {
        resolved = *rule;
        if (!resolve(resolved, "global_rule", id)) {
          // Dropping the rule would let every request pass without its
          // plugins (an auth plugin, say): fail closed for all of them.
          snap->global_unavailable = true;
          continue;
        }
        rule = &resolved;
      }
      for (const auto& kv : *rule) {
        if (++seen[kv.key()] > 1) {
          log::error("plugin {} is configured in more than one global rule; it will not run", std::string(kv.key()));
          merged.erase(kv.key());
        } else {
          merged[kv.key()] = kv.value();
        }
      }
    }
    auto chain = plugins::compile_chain(merged, opts.enabled_plugins, "global_rules");
    if (chain) {
      snap->global = std::move(*chain);
      bind_split(snap->global, "global_rules");
    }
  }
  if (!err.empty()) return Error{err};

  // routes
  std::vector<router::RouteSpec> specs;
  if (const json::array* arr = section(doc, "routes", err)) {
    for (size_t i = 0; i < arr->size(); ++i) {
      std::string id = item_id((*arr)[i], i);
      auto r = model::parse_route(with_id((*arr)[i], id));
      if (!r) { skip("route", id, r.error()); continue; }
      for (auto& w : model::ignored_keys("route", (*arr)[i].as_object()))
        snap->warnings.push_back(fmt::format("routes/{}: {}", id, w));
      const model::Route& route = **r;
      if (route.status == 0) continue;
      CompiledRoute cr;
      cr.id = id;
      cr.conf = *r;
      const model::Service* svc = nullptr;
      if (!route.service_id.empty()) {
        auto it = services.find(route.service_id);
        // As APISIX, a missing service does not take the route out of the
        // router: it still matches (with its own hosts only) and answers 404,
        // so no lower route is tried in its place.
        if (it == services.end()) {
          log::error("route id={}: failed to fetch service configuration by id: {}", id, route.service_id);
          cr.service_missing = true;
        } else {
          svc = it->second.get();
          cr.service_name = svc->name;
        }
      }
      const model::PluginSet* pc = nullptr;
      if (!route.plugin_config_id.empty()) {
        auto it = plugin_configs.find(route.plugin_config_id);
        if (it == plugin_configs.end()) { skip("route", id, "failed to fetch plugin config by id: " + route.plugin_config_id); continue; }
        pc = it->second.get();
      }
      // Precedence: route > plugin_config > service.
      json::object plugins = merge_plugins({svc ? &svc->plugins : nullptr, pc ? &pc->plugins : nullptr, &route.plugins});
      // A route whose plugins cannot be resolved keeps its place in the
      // router and answers 503 (below): a lower route never serves its
      // requests without its plugins.
      const bool unresolved = !resolve(plugins, "route", id);
      if (unresolved) plugins.clear();
      std::vector<std::string> ignored;
      auto chain = plugins::compile_chain(plugins, opts.enabled_plugins, "routes/" + id, &ignored);
      if (!chain) { skip("route", id, chain.error()); continue; }
      // A plugin the route inherits was named under its service or plugin
      // config already.
      for (auto& w : ignored)
        for (const auto& kv : route.plugins)
          if (w.find(fmt::format(": plugin {}: ", std::string_view(kv.key()))) != std::string::npos) {
            snap->warnings.push_back(std::move(w));
            break;
          }
      cr.chain = std::move(*chain);
      bind_split(cr.chain, "routes/" + id);

      // Upstream: route upstream_id > route upstream > service (upstream_id > upstream).
      auto by_id = [&](const std::string& uid) -> bool {
        auto it = snap->upstreams.find(uid);
        if (it == snap->upstreams.end()) {
          cr.upstream_error = 502;
          cr.upstream_error_msg = "failed to find upstream by id: " + uid;
          return false;
        }
        cr.upstream = it->second;
        return true;
      };
      if (!route.upstream_id.empty()) by_id(route.upstream_id);
      else if (route.upstream) cr.upstream = make_upstream("routes/" + id, route.upstream);
      else if (svc && !svc->upstream_id.empty()) by_id(svc->upstream_id);
      else if (svc && svc->upstream) cr.upstream = service_upstreams[svc->id];
      else { cr.upstream_error = 503; cr.upstream_error_msg = "missing upstream configuration in Route or Service"; }
      if (cr.upstream && cr.upstream->conf->nodes.empty()) {
        cr.upstream_error = 503;
        cr.upstream_error_msg = "no valid upstream node";
      }
      if (cr.upstream && !cr.upstream->tls_error.empty()) {
        cr.upstream_error = 502;
        cr.upstream_error_msg = "upstream TLS is not usable";
      }
      if (unresolved) {
        cr.upstream_error = 503;
        cr.upstream_error_msg = "the route's plugin configuration is unavailable on this node";
      }
      if (route.timeout) cr.timeout = *route.timeout;
      else if (cr.upstream && cr.upstream->conf->timeout) cr.timeout = *cr.upstream->conf->timeout;
      cr.websocket = route.enable_websocket.value_or(svc && svc->enable_websocket.value_or(false));

      router::RouteSpec spec;
      spec.index = static_cast<uint32_t>(snap->routes.size());
      spec.uris = route.uris;
      spec.hosts = !route.hosts.empty() ? route.hosts : (svc ? svc->hosts : std::vector<std::string>{});
      spec.methods = route.methods;
      spec.remote_addrs = route.remote_addrs;
      spec.priority = route.priority;
      if (!route.vars.is_null()) {
        auto e = router::Expr::compile(route.vars);
        if (!e) { skip("route", id, e.error()); continue; }
        spec.vars = *e;
        if (spec.vars->reads("post_arg") || spec.vars->reads("graphql_")) snap->router_reads_body = true;
      }
      specs.push_back(std::move(spec));
      snap->routes.push_back(std::move(cr));
    }
  }
  if (!err.empty()) return Error{err};
  auto router = router::Router::build(opts.router, specs);
  if (!router) return Error{router.error()};
  snap->router = std::move(*router);
  std::sort(dns_names.begin(), dns_names.end());
  dns_names.erase(std::unique(dns_names.begin(), dns_names.end()), dns_names.end());
  snap->dns_names = std::move(dns_names);
  // Each warning once per change, not on every reload.
  for (const auto& w : snap->warnings)
    if (!opts.previous || std::find(opts.previous->warnings.begin(), opts.previous->warnings.end(), w) ==
                              opts.previous->warnings.end())
      log::warn("{}", w);
  return snap;
}

}  // namespace holdfast::snapshot
