#include "admin/admin_api.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <re2/re2.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <optional>
#include <tuple>
#include <variant>

#include "admin/json_patch.h"
#include "admin/resource_check.h"
#include "core/budgets.h"
#include "core/data_encryption.h"
#include "core/log.h"
#include "http/codec.h"
#include "model/json_check.h"
#include "plugins/plugin.h"
#include "router/ipmatch.h"

namespace holdfast::admin {
namespace asio = boost::asio;
namespace json = boost::json;
using http::ControlRequest;
using http::ControlResponse;

namespace {

// Responses are built in plain functions: GCC 12 miscompiles initializer
// lists of JSON values inside coroutine bodies.
ControlResponse reply(int status, std::string body) {
  ControlResponse r;
  r.status = status;
  r.body = std::move(body);
  r.headers.emplace_back("X-API-VERSION", "v3");
  return r;
}

// A stored value, parsed at the per-resource budget it was written under
// (Boost.JSON's default depth of 32 would hide deeper, valid resources).
json::value parse_stored(const std::string& raw, boost::system::error_code& ec) {
  auto r = budgets::parse_json(raw, budgets::resource());
  if (!r) {
    ec = json::make_error_code(json::error::syntax);
    return nullptr;
  }
  ec = {};
  return std::move(*r);
}

ControlResponse reply_json(int status, const json::value& v) { return reply(status, json::serialize(v) + "\n"); }

ControlResponse error_reply(int status, std::string_view msg) {
  json::object o;
  o["error_msg"] = msg;
  return reply_json(status, o);
}

ControlResponse key_not_found() {
  json::object o;
  o["message"] = "Key not found";
  return reply_json(404, o);
}

ControlResponse token_error(std::string_view description) {
  json::object o;
  o["error_msg"] = "failed to check token";
  o["description"] = description;
  return reply_json(401, o);
}

ControlResponse method_not_supported(std::string_view method, const ResourceDef& def) {
  return error_reply(405, fmt::format("not supported `{}` method for {}", method, def.kind));
}

ControlResponse write_reply(int status, const std::string& key, const json::object& value) {
  json::object o;
  o["key"] = key;
  o["value"] = value;
  return reply_json(status, o);
}

ControlResponse deleted_reply(const std::string& key) {
  json::object o;
  o["deleted"] = "1";
  o["key"] = key;
  return reply_json(200, o);
}

json::object node_json(const config::KeyValue& kv, json::value value) {
  json::object o;
  o["key"] = kv.key;
  o["value"] = std::move(value);
  o["createdIndex"] = kv.create_revision;
  o["modifiedIndex"] = kv.mod_revision;
  return o;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// APISIX compares ids with tostring(): 1 and "1" are the same id.
std::string id_string(const json::value& v) {
  if (v.is_string()) return std::string(v.as_string());
  return json::serialize(v);
}

std::string field_string(const json::object& o, const char* field) {
  auto it = o.find(field);
  return it == o.end() ? std::string() : id_string(it->value());
}

bool key_equal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string cookie_value(const ControlRequest& req) {
  for (const auto& [name, value] : req.headers) {
    if (!http::iequals(name, "cookie")) continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      size_t semi = rest.find(';');
      std::string_view item = rest.substr(0, semi);
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      size_t eq = item.find('=');
      if (eq != std::string_view::npos) {
        std::string_view k = item.substr(0, eq);
        // nginx's $cookie_x_api_key looks for x_api_key; clients send X-API-KEY.
        if (http::iequals(k, "x-api-key") || http::iequals(k, "x_api_key")) return std::string(item.substr(eq + 1));
      }
      if (semi == std::string_view::npos) break;
      rest.remove_prefix(semi + 1);
    }
  }
  return {};
}

std::vector<std::string> split_path(std::string_view p) {
  std::vector<std::string> out;
  while (!p.empty()) {
    size_t slash = p.find('/');
    std::string_view seg = p.substr(0, slash);
    if (!seg.empty()) out.emplace_back(seg);
    if (slash == std::string_view::npos) break;
    p.remove_prefix(slash + 1);
  }
  return out;
}

std::string join(const std::vector<std::string>& segs, size_t from) {
  std::string out;
  for (size_t i = from; i < segs.size(); ++i) out += (out.empty() ? "" : "/") + segs[i];
  return out;
}

// The resource a request addresses.
struct Target {
  const ResourceDef* def = nullptr;
  std::string id;        // URL id: username, plugin name, credential or secret id; "" for a collection
  std::string sub_path;  // PATCH /<res>/<id>/<sub/path>
  std::string username;  // credentials: the parent consumer
  std::string manager;   // secrets: vault | aws | gcp
  std::string dir;       // etcd key of the collection, without the trailing slash
  std::string key() const { return dir + "/" + id; }
};

// "the property is forbidden:  create_time" (APISIX's message has two spaces).
std::optional<std::string> forbidden_timestamp(const json::object& body) {
  for (const char* f : {"create_time", "update_time"})
    if (body.contains(f)) return fmt::format("the property is forbidden:  {}", f);
  if (auto u = body.find("upstream"); u != body.end() && u->value().is_object())
    for (const char* f : {"create_time", "update_time"})
      if (u->value().as_object().contains(f)) return fmt::format("the property is forbidden:  upstream.{}", f);
  return std::nullopt;
}

struct ListQuery {
  std::string name, label, uri, filter_key, filter_value;
  bool paginate = false;
  int64_t page = 1, page_size = 10;
};

std::optional<int64_t> to_int(const std::string& s) {
  if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::stoll(s);
}

Result<ListQuery> parse_list_query(const ControlRequest& req) {
  ListQuery q;
  q.name = req.arg("name");
  q.label = req.arg("label");
  q.uri = req.arg("uri");
  if (std::string f = req.arg("filter"); !f.empty()) {
    size_t eq = f.find('=');
    q.filter_key = f.substr(0, eq);
    q.filter_value = eq == std::string::npos ? "" : f.substr(eq + 1);
  }
  std::string ps = req.arg("page_size"), pg = req.arg("page");
  if (!ps.empty()) {
    auto n = to_int(ps);
    if (!n || *n < 10 || *n > 500) return Error{"page_size must be between 10 and 500"};
    q.page_size = *n;
    q.paginate = true;
  }
  if (!pg.empty()) {
    auto n = to_int(pg);
    q.page = n && *n >= 1 ? *n : 1;
    q.paginate = true;
  }
  return q;
}

bool regex_find(const RE2& re, const json::value* v) {
  return re.ok() && v && v->is_string() && RE2::PartialMatch(std::string(v->as_string()), re);
}

bool matches(const json::object& value, const ListQuery& q, const RE2* name_re, const RE2* uri_re) {
  if (name_re && !regex_find(*name_re, value.if_contains("name"))) return false;
  if (!q.label.empty()) {
    const json::value* labels = value.if_contains("labels");
    if (!labels || !labels->is_object() || !labels->as_object().contains(q.label)) return false;
  }
  if (uri_re) {
    bool hit = regex_find(*uri_re, value.if_contains("uri"));
    if (const json::value* uris = value.if_contains("uris"); !hit && uris && uris->is_array())
      for (const auto& u : uris->as_array())
        if (regex_find(*uri_re, &u)) { hit = true; break; }
    if (!hit) return false;
  }
  if (!q.filter_key.empty() && field_string(value, q.filter_key.c_str()) != q.filter_value) return false;
  return true;
}

// Who holds a duplicate of one of `value`'s auth keys (APISIX rejects
// keys that another consumer already uses); stored keys are compared
// decrypted. `skip_owner`: a consumer may repeat its own credentials' keys.
std::optional<std::string> find_duplicate(const std::vector<config::KeyValue>& kvs, size_t dir_len,
                                          const std::string& own_key, const std::string& skip_owner,
                                          const json::object& value, const data_encryption::Keyring* keyring) {
  auto pit = value.find("plugins");
  if (pit == value.end() || !pit->value().is_object()) return std::nullopt;
  std::vector<std::tuple<std::string, std::string, std::string>> wanted;  // plugin, field, plaintext
  for (const auto& f : auth_key_fields()) {
    const json::value* conf = pit->value().as_object().if_contains(f.plugin);
    if (!conf || !conf->is_object()) continue;
    const json::value* k = conf->as_object().if_contains(f.field);
    if (k && k->is_string()) wanted.emplace_back(f.plugin, f.field, std::string(k->as_string()));
  }
  if (wanted.empty()) return std::nullopt;
  for (const auto& kv : kvs) {
    if (kv.key == own_key || kv.key.size() <= dir_len) continue;
    std::string rest = kv.key.substr(dir_len);
    std::string owner = rest.substr(0, rest.find('/'));
    if (!skip_owner.empty() && owner == skip_owner) continue;
    boost::system::error_code ec;
    json::value v = parse_stored(kv.value, ec);
    if (ec || !v.is_object()) continue;
    const json::value* plugins = v.as_object().if_contains("plugins");
    if (!plugins || !plugins->is_object()) continue;
    for (const auto& [plugin, field, plain] : wanted) {
      const json::value* conf = plugins->as_object().if_contains(plugin);
      if (!conf || !conf->is_object()) continue;
      const json::value* k = conf->as_object().if_contains(field);
      if (!k || !k->is_string()) continue;
      std::string other(k->as_string());
      if (keyring)
        if (auto d = data_encryption::decrypt_any(other, *keyring)) other = *d;
      if (key_equal(other, plain)) return "duplicate key found with consumer: " + owner;
    }
  }
  return std::nullopt;
}

// The first resource in `kvs` whose `field` names `id`, as "<label> [<id>]".
// APISIX's up_id_in_plugins: some traffic-split weighted upstream names `id`.
bool split_refers(const json::object& v, const std::string& id) {
  const json::value* plugins = v.if_contains("plugins");
  const json::value* ts = plugins && plugins->is_object() ? plugins->as_object().if_contains("traffic-split") : nullptr;
  const json::value* rules = ts && ts->is_object() ? ts->as_object().if_contains("rules") : nullptr;
  if (!rules || !rules->is_array()) return false;
  for (const auto& rule : rules->as_array()) {
    const json::value* ups = rule.is_object() ? rule.as_object().if_contains("weighted_upstreams") : nullptr;
    if (!ups || !ups->is_array()) continue;
    for (const auto& u : ups->as_array())
      if (u.is_object() && u.as_object().contains("upstream_id") && field_string(u.as_object(), "upstream_id") == id)
        return true;
  }
  return false;
}

std::optional<std::string> find_referrer(const std::vector<config::KeyValue>& kvs, size_t dir_len,
                                         const ReferenceRule& rule, const std::string& id) {
  for (const auto& kv : kvs) {
    if (kv.key.size() <= dir_len) continue;
    std::string rid = kv.key.substr(dir_len);
    if (rid.find('/') != std::string::npos) continue;  // credentials and other sub-resources
    boost::system::error_code ec;
    json::value v = parse_stored(kv.value, ec);
    if (ec || !v.is_object()) continue;
    if (rule.split_refs && split_refers(v.as_object(), id))
      return fmt::format("{}, plugin in {} [{}] is still using it now", rule.message, rule.label, rid);
    if (rule.field && v.as_object().contains(rule.field) && field_string(v.as_object(), rule.field) == id)
      return fmt::format("{}, {} [{}] is still using it now", rule.message, rule.label, rid);
  }
  return std::nullopt;
}

enum class Mode { put, post, patch };

// PUT timestamps: create_time survives a replacement, update_time is now.
void stamp(const ResourceDef& def, json::object& value, const config::KeyValue* prev, int64_t now) {
  if (!def.timestamps) return;
  int64_t create_time = now;
  if (prev) {
    boost::system::error_code ec;
    json::value pv = parse_stored(prev->value, ec);
    if (!ec && pv.is_object())
      if (const json::value* ct = pv.as_object().if_contains("create_time"); ct && ct->is_int64())
        create_time = ct->as_int64();
  }
  value["create_time"] = create_time;
  value["update_time"] = now;
}

}  // namespace

struct AdminApi::Impl {
  const NodeConfig& cfg;
  config::EtcdClient& etcd;
  std::string prefix;
  bool allow_all = false;
  std::optional<router::IpMatcher> allow;  // nullopt with !allow_all: misconfigured, deny everyone
  bool stream_enabled = false;

  Impl(const NodeConfig& c, config::EtcdClient& e) : cfg(c), etcd(e), prefix(c.etcd.prefix) {
    if (cfg.admin.allow.empty()) {
      allow_all = true;  // APISIX: no allow_admin list means every client
    } else if (auto m = router::IpMatcher::compile(cfg.admin.allow); m) {
      allow = std::move(*m);
    } else {
      log::error("deployment.admin.allow_admin: {}; the Admin API refuses every client", m.error());
    }
    if (cfg.admin.key_required && cfg.admin.keys.empty())
      log::warn("deployment.admin.admin_key is empty: the Admin API refuses every request");
    if (cfg.raw.is_object())
      if (const json::value* a = cfg.raw.as_object().if_contains("apisix"); a && a->is_object())
        if (const json::value* pm = a->as_object().if_contains("proxy_mode"); pm && pm->is_string())
          stream_enabled = pm->as_string().find("stream") != json::string::npos;
  }

  const data_encryption::Keyring* keyring() const { return cfg.encrypt_fields ? &cfg.keyring : nullptr; }

  // Built-in plugins that a config.yaml `plugins` list enables (empty: all).
  static std::vector<const plugins::PluginDef*> enabled_plugins(const std::vector<std::string>& configured) {
    std::vector<const plugins::PluginDef*> out;
    for (const plugins::PluginDef* d : plugins::all_plugins())
      if (configured.empty() || std::find(configured.begin(), configured.end(), d->name) != configured.end())
        out.push_back(d);
    return out;
  }

  // APISIX's sync_local_conf_to_etcd: the Admin node stores its enabled
  // plugin list at <prefix>/plugins as [{"name": ...}]; data planes enable
  // exactly that list and pick up a change without a restart.
  asio::awaitable<Status> publish_plugin_list(const std::vector<std::string>& configured) {
    json::array list;
    const std::vector<const plugins::PluginDef*> enabled = enabled_plugins(configured);  // a named local in a coroutine
    for (const plugins::PluginDef* d : enabled) {
      json::object item;
      item["name"] = d->name;
      list.push_back(std::move(item));
    }
    auto r = co_await etcd.put(prefix + "/plugins", json::serialize(list));
    if (!r) co_return Error{r.error()};
    co_return Status{};
  }

  // PUT /apisix/admin/plugins/reload: re-reads config.yaml's plugin list and
  // publishes it, as APISIX does.
  asio::awaitable<ControlResponse> reload_plugins() {
    auto fresh = load_node_config(cfg.config_path);
    if (!fresh) co_return error_reply(400, "failed to reload " + cfg.config_path + ": " + fresh.error());
    auto st = co_await publish_plugin_list(fresh->plugins);
    if (!st) co_return error_reply(503, st.error());
    log::info("Admin API: plugin list reloaded from {} and published", cfg.config_path);
    ControlResponse r;
    r.status = 200;
    r.body = "done";
    r.headers = {{"Content-Type", "text/plain"}};
    co_return r;
  }

  // nullopt: allowed; otherwise the 401/403 to send.
  std::optional<ControlResponse> check_access(const ControlRequest& req) const {
    if (!allow_all && !(allow && allow->match(req.remote_addr))) {
      log::warn("Admin API: client {} is not in deployment.admin.allow_admin", req.remote_addr);
      return error_reply(403, "403 Forbidden");
    }
    if (!cfg.admin.key_required) return std::nullopt;
    std::string token = req.arg("api_key");
    if (token.empty()) token = req.header("X-API-KEY");
    if (token.empty()) token = cookie_value(req);
    if (token.empty()) return token_error("missing apikey");
    const AdminKey* found = nullptr;
    for (const auto& k : cfg.admin.keys)
      if (key_equal(k.key, token)) { found = &k; break; }
    if (!found) return token_error("wrong apikey");
    if (found->role == "viewer" && req.method != "GET") return token_error("invalid method for role viewer");
    return std::nullopt;
  }

  // Maps /apisix/admin/... to a Target, or the 404 to send.
  std::variant<Target, ControlResponse> parse_target(const std::vector<std::string>& segs) const {
    Target t;
    const std::string& res = segs[0];
    if (res == "consumers" && segs.size() >= 3 && segs[2] == "credentials") {
      t.def = find_resource("credentials");
      t.username = segs[1];
      t.id = segs.size() > 3 ? segs[3] : "";
      t.sub_path = join(segs, 4);
      t.dir = prefix + "/consumers/" + t.username + "/credentials";
      return t;
    }
    if (res == "secrets") {
      t.def = find_resource("secrets");
      t.manager = segs.size() > 1 ? segs[1] : "";
      t.id = segs.size() > 2 ? segs[2] : "";
      t.sub_path = join(segs, 3);
      t.dir = prefix + "/secrets" + (t.manager.empty() ? "" : "/" + t.manager);
      return t;
    }
    t.def = res == "credentials" ? nullptr : find_resource(res);
    if (!t.def) return error_reply(404, "Unsupported resource type: " + res);
    t.id = segs.size() > 1 ? segs[1] : "";
    t.sub_path = join(segs, 2);
    t.dir = prefix + "/" + res;
    return t;
  }

  // What GET shows: decrypted plugin fields (as APISIX's admin does), never
  // an SSL private key.
  void present(const ResourceDef& def, json::object& value) const {
    if (keyring()) data_encryption::decrypt_fields(value, def.name, *keyring());
    if (std::string_view(def.name) == "ssls") {
      value.erase("key");
      value.erase("keys");
    }
  }

  ControlResponse build_list(const Target& t, const std::vector<config::KeyValue>& kvs, const ListQuery& q) const {
    std::unique_ptr<RE2> name_re, uri_re;
    RE2::Options o;
    o.set_log_errors(false);
    if (!q.name.empty()) name_re = std::make_unique<RE2>(q.name, o);
    if (!q.uri.empty()) uri_re = std::make_unique<RE2>(q.uri, o);
    const size_t dir_len = t.dir.size() + 1;
    // Listing every secret spans the managers: keys are <manager>/<id>.
    const size_t slashes = std::string_view(t.def->name) == "secrets" && t.manager.empty() ? 1 : 0;
    std::vector<std::pair<const config::KeyValue*, json::object>> items;
    for (const auto& kv : kvs) {
      if (kv.key.size() <= dir_len) continue;  // the directory marker
      std::string rest = kv.key.substr(dir_len);
      if (static_cast<size_t>(std::count(rest.begin(), rest.end(), '/')) != slashes) continue;
      boost::system::error_code ec;
      json::value v = parse_stored(kv.value, ec);
      if (ec || !v.is_object()) continue;  // init_dir markers and foreign values
      if (!matches(v.as_object(), q, name_re.get(), uri_re.get())) continue;
      items.emplace_back(&kv, std::move(v.as_object()));
    }
    const size_t total = items.size();
    size_t from = 0, to = items.size();
    if (q.paginate) {
      std::stable_sort(items.begin(), items.end(),
                       [](const auto& a, const auto& b) { return a.first->create_revision < b.first->create_revision; });
      from = std::min(items.size(), static_cast<size_t>((q.page - 1) * q.page_size));
      to = std::min(items.size(), from + static_cast<size_t>(q.page_size));
    }
    json::array list;
    for (size_t i = from; i < to; ++i) {
      present(*t.def, items[i].second);
      list.push_back(node_json(*items[i].first, std::move(items[i].second)));
    }
    json::object out;
    out["list"] = std::move(list);
    out["total"] = total;
    return reply_json(200, out);
  }

  ControlResponse build_one(const Target& t, const config::KeyValue& kv) const {
    boost::system::error_code ec;
    json::value v = parse_stored(kv.value, ec);
    if (ec) v = json::string(kv.value);
    if (v.is_object()) present(*t.def, v.as_object());
    return reply_json(200, node_json(kv, std::move(v)));
  }

  ControlResponse plugin_list() const {
    json::array names;
    for (const plugins::PluginDef* d : enabled_plugins(cfg.plugins)) names.emplace_back(d->name);
    return reply_json(200, names);
  }

  asio::awaitable<ControlResponse> handle(const ControlRequest& req);
  asio::awaitable<ControlResponse> get(const ControlRequest& req, const Target& t);
  asio::awaitable<ControlResponse> put(const Target& t, json::value body);
  asio::awaitable<ControlResponse> post(const Target& t, json::value body);
  asio::awaitable<ControlResponse> patch(const Target& t, json::value body);
  asio::awaitable<ControlResponse> remove(const ControlRequest& req, const Target& t);
  asio::awaitable<ControlResponse> store(const Target& t, std::string key, json::object value, Mode mode,
                                         int64_t mod_revision);
  asio::awaitable<ControlResponse> store_unique(const Target& t, std::string key, json::object value);
};

asio::awaitable<ControlResponse> AdminApi::Impl::handle(const ControlRequest& req) {
  if (auto denied = check_access(req)) co_return *denied;
  static constexpr std::string_view kBase = "/apisix/admin";
  std::string_view path = req.path;
  if (!path.starts_with(kBase) || (path.size() > kBase.size() && path[kBase.size()] != '/'))
    co_return error_reply(404, "not found");
  std::vector<std::string> segs = split_path(path.substr(kBase.size()));
  if (segs.empty()) co_return error_reply(404, "not found");
  if (segs[0] == "plugins") {
    if (segs.size() == 2 && segs[1] == "list" && req.method == "GET") co_return plugin_list();
    if (segs.size() == 2 && segs[1] == "reload" && req.method == "PUT") {
      ControlResponse r = co_await reload_plugins();
      co_return r;
    }
    co_return error_reply(404, "not found");
  }
  auto parsed = parse_target(segs);
  if (auto* r = std::get_if<ControlResponse>(&parsed)) co_return *r;
  Target t = std::get<Target>(std::move(parsed));

  const std::string& m = req.method;
  if (std::string_view(t.def->name) == "stream_routes" && !stream_enabled && (m == "PUT" || m == "POST" || m == "PATCH"))
    co_return error_reply(400, "stream mode is disabled, can not add stream routes");
  json::value body;
  if ((m == "PUT" || m == "POST" || m == "PATCH") && !req.body.empty()) {
    // One resource: the per-resource depth applies here, where it enters.
    const budgets::Document budget = budgets::resource(budgets::kMaxAdminBodyBytes);
    auto parsed = budgets::parse_json(req.body, budget);
    if (!parsed) co_return error_reply(400, "invalid request body: " + parsed.error());
    body = std::move(*parsed);
  }
  ControlResponse r;
  if (m == "GET") r = co_await get(req, t);
  else if (m == "PUT") r = co_await put(t, std::move(body));
  else if (m == "POST") r = co_await post(t, std::move(body));
  else if (m == "PATCH") r = co_await patch(t, std::move(body));
  else if (m == "DELETE") r = co_await remove(req, t);
  else r = error_reply(405, fmt::format("not supported `{}` method for {}", m, t.def->kind));
  if (m != "GET") log::info("Admin API: {} {} -> {}", m, req.path, r.status);
  co_return r;
}

asio::awaitable<ControlResponse> AdminApi::Impl::get(const ControlRequest& req, const Target& t) {
  if (t.id.empty()) {
    auto q = parse_list_query(req);
    if (!q) co_return error_reply(400, q.error());
    auto r = co_await etcd.get_prefix(t.dir + "/");
    if (!r) co_return error_reply(503, r.error());
    co_return build_list(t, r->kvs, *q);
  }
  auto r = co_await etcd.get(t.key());
  if (!r) co_return error_reply(503, r.error());
  if (r->kvs.empty()) co_return key_not_found();
  co_return build_one(t, r->kvs.front());
}

asio::awaitable<ControlResponse> AdminApi::Impl::put(const Target& t, json::value body) {
  const ResourceDef& def = *t.def;
  if (body.is_null()) co_return error_reply(400, "missing configurations");
  if (!body.is_object())
    co_return error_reply(400, "invalid configuration: wrong type: expected object, got " + model::type_name(body));
  json::object value = std::move(body.as_object());
  if (auto f = forbidden_timestamp(value)) co_return error_reply(400, *f);
  std::string name = def.name;
  std::string key;
  if (name == "consumers") {
    // PUT /consumers takes the key from `username`; PUT /consumers/<u> must
    // agree with it, or supplies it.
    if (!t.id.empty() && !value.contains("username")) value["username"] = t.id;
    std::string username = value.contains("username") ? id_string(value.at("username")) : "";
    if (!t.id.empty() && username != t.id) co_return error_reply(400, "wrong username");
    key = t.dir + "/" + username;
  } else if (name == "plugin_metadata") {
    if (t.id.empty()) co_return error_reply(400, "missing plugin name");
    value["id"] = t.id;
    key = t.key();
  } else if (name == "secrets") {
    if (t.manager.empty() || t.id.empty()) co_return error_reply(400, "missing secret id");
    std::string sid = t.manager + "/" + t.id;
    if (value.contains("id") && id_string(value.at("id")) != sid) co_return error_reply(400, "wrong secret id");
    value["id"] = sid;
    key = t.key();
  } else {
    std::string id = !t.id.empty() ? t.id : value.contains("id") ? id_string(value.at("id")) : "";
    if (id.empty()) co_return error_reply(400, fmt::format("missing {} id", def.kind));
    if (value.contains("id") && id_string(value.at("id")) != id) co_return error_reply(400, fmt::format("wrong {} id", def.kind));
    value["id"] = id;
    key = t.dir + "/" + id;
  }
  ControlResponse r = co_await store(t, std::move(key), std::move(value), Mode::put, 0);
  co_return r;
}

asio::awaitable<ControlResponse> AdminApi::Impl::post(const Target& t, json::value body) {
  const ResourceDef& def = *t.def;
  if (!def.post) co_return method_not_supported("POST", def);
  if (!t.id.empty()) co_return error_reply(400, fmt::format("wrong {} id, do not need it", def.kind));
  if (body.is_null()) co_return error_reply(400, "missing configurations");
  if (!body.is_object())
    co_return error_reply(400, "invalid configuration: wrong type: expected object, got " + model::type_name(body));
  json::object value = std::move(body.as_object());
  if (value.contains("id")) co_return error_reply(400, fmt::format("wrong {} id, do not need it", def.kind));
  if (auto f = forbidden_timestamp(value)) co_return error_reply(400, *f);
  // Validated with a placeholder id; store() swaps in the generated one.
  value["id"] = "00000000000000000000";
  ControlResponse r = co_await store(t, "", std::move(value), Mode::post, 0);
  co_return r;
}

asio::awaitable<ControlResponse> AdminApi::Impl::patch(const Target& t, json::value body) {
  const ResourceDef& def = *t.def;
  if (!def.patch) co_return method_not_supported("PATCH", def);
  if (t.id.empty() || (std::string_view(def.name) == "secrets" && t.manager.empty()))
    co_return error_reply(400, fmt::format("missing {} id", def.kind));
  if (body.is_null()) co_return error_reply(400, "missing new configuration");
  if (t.sub_path.empty() && !body.is_object()) co_return error_reply(400, "invalid configuration");
  if (t.sub_path.empty()) {
    if (auto f = forbidden_timestamp(body.as_object())) co_return error_reply(400, *f);
  } else {
    std::string first = t.sub_path.substr(0, t.sub_path.find('/'));
    if (first == "create_time" || first == "update_time")
      co_return error_reply(400, fmt::format("the property is forbidden:  {}", first));
  }
  const std::string key = t.key();
  auto old = co_await etcd.get(key);
  if (!old) co_return error_reply(503, old.error());
  if (old->kvs.empty()) co_return key_not_found();
  const int64_t mod_revision = old->kvs.front().mod_revision;
  boost::system::error_code ec;
  json::value stored = parse_stored(old->kvs.front().value, ec);
  json::object value;
  if (!ec && stored.is_object()) value = std::move(stored.as_object());
  // Merge on plaintext so that encrypted fields are not encrypted twice.
  if (keyring()) data_encryption::decrypt_fields(value, def.name, *keyring());
  if (t.sub_path.empty()) {
    merge_patch(value, body.as_object());
  } else if (auto st = patch_sub_path(value, t.sub_path, body); !st) {
    co_return error_reply(400, st.error());
  }
  const std::string id = std::string_view(def.name) == "secrets" ? t.manager + "/" + t.id : t.id;
  if (value.contains("id") && id_string(value.at("id")) != id) co_return error_reply(400, fmt::format("wrong {} id", def.kind));
  value["id"] = id;
  ControlResponse r = co_await store(t, key, std::move(value), Mode::patch, mod_revision);
  co_return r;
}

asio::awaitable<ControlResponse> AdminApi::Impl::store(const Target& t, std::string key, json::object value, Mode mode,
                                                       int64_t mod_revision) {
  const ResourceDef& def = *t.def;
  const std::string name = def.name;
  if (mode != Mode::post) {
    // APISIX's id pattern allows them, but /routes/. and /routes/.. are
    // normalised away by every HTTP stack: such a resource could never be
    // read, changed or deleted again (a deliberate difference, see README).
    const std::string last = key.substr(key.rfind('/') + 1);
    if (last == "." || last == "..")
      co_return error_reply(400, fmt::format("invalid configuration: property \"id\" validation failed: \"{}\" cannot "
                                             "be used as an id (it cannot be addressed in a URL)", last));
  }
  // A PATCH can nest a stored value deeper than any body could.
  if (auto st = budgets::check_resource_depth(value); !st) co_return error_reply(400, "invalid configuration: " + st.error());
  CheckOptions opts;
  opts.enabled_plugins = cfg.plugins;
  opts.secret_manager = t.manager;
  std::vector<std::string> ignored;
  opts.warnings = &ignored;
  auto checked = check_resource(def, value, opts);
  if (!checked) co_return error_reply(400, checked.error());
  // APISIX answers as if the fields were not there; the log names them.
  for (const auto& w : ignored) log::warn("Admin API: {}", w);
  if (name == "secrets") {
    if (!model::parse_id(json::value(t.id)))
      co_return error_reply(400, "invalid configuration: property \"id\" validation failed: object matches none of the required");
  }

  for (const Reference& ref : *checked) {
    auto r = co_await etcd.get(prefix + "/" + ref.dir + "/" + ref.id);
    if (!r) co_return error_reply(503, fmt::format("failed to fetch {} info by {} id [{}]: {}", ref.label, ref.label, ref.id, r.error()));
    if (r->kvs.empty())
      co_return error_reply(400, fmt::format("failed to fetch {} info by {} id [{}], response code: 404", ref.label, ref.label, ref.id));
  }

  if (name == "credentials") {
    auto parent = co_await etcd.get(prefix + "/consumers/" + t.username);
    if (!parent) co_return error_reply(503, parent.error());
    if (parent->kvs.empty()) co_return error_reply(404, fmt::format("consumer [{}] not found", t.username));
  }
  if (name == "consumers" || name == "credentials") {
    ControlResponse r = co_await store_unique(t, std::move(key), std::move(value));
    co_return r;
  }

  const int64_t now = unix_now();
  bool existed = false;
  if (mode == Mode::put) {
    auto prev = co_await etcd.get(key);
    if (!prev) co_return error_reply(503, prev.error());
    existed = !prev->kvs.empty();
    stamp(def, value, existed ? &prev->kvs.front() : nullptr, now);
  } else if (def.timestamps && (mode == Mode::post || !value.contains("create_time"))) {
    value["create_time"] = now;
  }
  if (def.timestamps) value["update_time"] = now;

  if (mode == Mode::post) {
    // APISIX: the id is the revision of a write to <prefix>/gen_id.
    auto rev = co_await etcd.put(prefix + "/gen_id", "1");
    if (!rev) co_return error_reply(503, rev.error());
    std::string id = fmt::format("{:020d}", *rev);
    value["id"] = id;
    key = t.dir + "/" + id;
  }

  if (cfg.encrypt_fields) {
    if (auto st = data_encryption::encrypt_fields(value, name, cfg.keyring); !st)
      co_return error_reply(500, "cannot encrypt sensitive fields: " + st.error());
  }
  const std::string text = json::serialize(value);
  if (mode == Mode::patch) {
    auto ok = co_await etcd.put_if(key, text, mod_revision);
    if (!ok) co_return error_reply(503, ok.error());
    if (!*ok) co_return error_reply(503, "value changed before overwritten");
  } else {
    auto rev = co_await etcd.put(key, text);
    if (!rev) co_return error_reply(503, rev.error());
  }
  if (name == "ssls") {
    value.erase("key");
    value.erase("keys");
  }
  int status = mode == Mode::patch ? 200 : mode == Mode::post ? 201 : existed ? 200 : 201;
  co_return write_reply(status, key, value);
}

// PUT of a consumer or credential: auth keys must stay unique across
// consumers even when two Admin nodes (or two requests on one) write at the
// same time. The write is one etcd transaction that succeeds only if nothing
// under <prefix>/consumers/ changed since the range the duplicate check read
// (every key's mod_revision <= that read's revision); on a conflict the check
// runs again on fresh data. No index keys: APISIX nodes may share this etcd.
asio::awaitable<ControlResponse> AdminApi::Impl::store_unique(const Target& t, std::string key, json::object value) {
  const ResourceDef& def = *t.def;
  const std::string name = def.name;
  const std::string dir = prefix + "/consumers/";
  // A consumer may share a key with its own credentials; a credential
  // with nothing but itself (APISIX consumers.lua / credentials.lua).
  const std::string skip_owner = name == "consumers" ? field_string(value, "username") : "";
  // Every failed attempt means another write under consumers/ landed, so
  // this bound is only reached under a sustained stream of consumer writes.
  constexpr int kAttempts = 32;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    auto all = co_await etcd.get_prefix(dir);
    if (!all) co_return error_reply(503, all.error());
    if (auto dup = find_duplicate(all->kvs, dir.size(), key, skip_owner, value, keyring()))
      co_return error_reply(400, *dup);
    const config::KeyValue* prev = nullptr;
    for (const auto& kv : all->kvs)
      if (kv.key == key) prev = &kv;
    json::object stored = value;  // encrypted per attempt: `value` stays plaintext for the next check
    stamp(def, stored, prev, unix_now());
    if (cfg.encrypt_fields) {
      if (auto st = data_encryption::encrypt_fields(stored, name, cfg.keyring); !st)
        co_return error_reply(500, "cannot encrypt sensitive fields: " + st.error());
    }
    const std::string text = json::serialize(stored);
    auto ok = co_await etcd.put_if_range_unchanged(key, text, dir, config::prefix_end(dir), all->revision);
    if (!ok) co_return error_reply(503, ok.error());
    if (*ok) co_return write_reply(prev ? 200 : 201, key, stored);
    log::debug("Admin API: consumers changed while writing {}, checking again", key);
  }
  co_return error_reply(503, "value changed before overwritten");
}

asio::awaitable<ControlResponse> AdminApi::Impl::remove(const ControlRequest& req, const Target& t) {
  const ResourceDef& def = *t.def;
  if (t.id.empty() || (std::string_view(def.name) == "secrets" && t.manager.empty()))
    co_return error_reply(400, fmt::format("missing {} id", def.kind));
  const std::string key = t.key();
  auto cur = co_await etcd.get(key);
  if (!cur) co_return error_reply(503, cur.error());
  if (cur->kvs.empty()) co_return key_not_found();
  if (req.arg("force") != "true") {
    // A named local, not a temporary in the range-for: the loop suspends.
    const std::vector<ReferenceRule> rules = delete_rules(def);
    for (const ReferenceRule& rule : rules) {
      const std::string dir = prefix + "/" + rule.dir + "/";
      auto all = co_await etcd.get_prefix(dir);
      if (!all) co_return error_reply(503, all.error());
      if (auto who = find_referrer(all->kvs, dir.size(), rule, t.id)) co_return error_reply(400, *who);
    }
  }
  auto n = co_await etcd.del(key);
  if (!n) co_return error_reply(503, n.error());
  if (std::string_view(def.name) == "consumers") {
    // A consumer's credentials go with it.
    const std::string creds = key + "/credentials/";
    auto d = co_await etcd.del(creds, config::prefix_end(creds));
    if (!d) co_return error_reply(503, d.error());
  }
  co_return deleted_reply(key);
}

AdminApi::AdminApi(const NodeConfig& cfg, config::EtcdClient& etcd) : impl_(new Impl(cfg, etcd)) {}
AdminApi::~AdminApi() = default;

boost::asio::awaitable<void> AdminApi::publish_plugins_at_start() {
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer timer(ex);
  retry_timer_ = &timer;
  struct Unlist {
    asio::steady_timer*& p;
    ~Unlist() { p = nullptr; }
  } unlist{retry_timer_};
  for (int attempt = 0;; ++attempt) {
    auto st = co_await impl_->publish_plugin_list(impl_->cfg.plugins);
    if (st) {
      log::info("Admin API: enabled plugin list published to {}/plugins", impl_->prefix);
      co_return;
    }
    if (stopped_) co_return;
    // etcd may not be up yet: retry quietly, logging the first failure only.
    if (attempt == 0) log::warn("Admin API: cannot publish the plugin list yet ({}), retrying", st.error());
    timer.expires_after(std::chrono::seconds(std::min(1 << std::min(attempt, 4), 10)));
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec || stopped_) co_return;
  }
}

void AdminApi::stop() {
  stopped_ = true;
  if (retry_timer_) retry_timer_->cancel();
}

boost::asio::awaitable<http::ControlResponse> AdminApi::handle(const http::ControlRequest& req) {
  ControlResponse r = co_await impl_->handle(req);
  co_return r;
}

}  // namespace holdfast::admin
