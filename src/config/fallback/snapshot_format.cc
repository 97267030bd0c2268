#include "config/fallback/snapshot_format.h"

#include <fmt/format.h>

#include <boost/json.hpp>

#include "cloud/aws/sigv4.h"
#include "core/budgets.h"

namespace holdfast::config::fallback {
namespace json = boost::json;

std::string manifest_key(const std::string& gid) { return "holdfast/" + gid + "/manifest.json"; }
std::string resource_key(const std::string& gid, const std::string& sha) { return "holdfast/" + gid + "/resources/" + sha + ".json"; }
std::string config_key(const std::string& gid, const std::string& sha) { return "holdfast/" + gid + "/config/" + sha + ".json"; }

std::string Manifest::signing_string() const {
  return fmt::format("holdfast-fallback/v{}\n{}\n{}\n{}\n{}/{}\n{}\n{}/{}\n{}", kFormatVersion, gateway_group_id, revision,
                     created_at, resource.bucket, resource.key, resource.sha256, config.bucket, config.key, config.sha256);
}

json::object resource_object(const json::object& doc) {
  json::object out;
  for (const auto& [k, v] : doc) {
    if (!v.is_array() || v.as_array().empty()) continue;
    json::array items;
    for (const auto& item : v.as_array()) {
      if (!item.is_object()) continue;
      json::object o = item.as_object();
      o.erase("create_time");
      o.erase("update_time");
      items.push_back(std::move(o));
    }
    out[k] = std::move(items);
  }
  return out;
}

size_t resource_count(const json::object& doc) {
  size_t n = 0;
  for (const auto& [k, v] : doc)
    if (v.is_array() && k != "plugins") n += v.as_array().size();  // the plugin list is not a resource
  return n;
}

std::string config_object(int64_t revision, const std::vector<std::string>& keyring, bool encrypt_fields) {
  json::array ring;
  for (const auto& k : keyring) ring.push_back(json::string(k));
  json::object payload;
  payload["keyring"] = std::move(ring);
  payload["encrypt_fields"] = encrypt_fields;
  payload["discovery"] = json::object();
  json::object cfg;
  cfg["config_version"] = revision;
  cfg["config_payload"] = std::move(payload);
  json::object root;
  root["config"] = std::move(cfg);
  return json::serialize(root);
}

namespace {
json::object ref_json(const ObjectRef& r) {
  json::object o;
  o["bucket"] = r.bucket;
  o["key"] = r.key;
  o["sha256"] = r.sha256;
  o["size"] = r.size;
  return o;
}

Result<ObjectRef> ref_from(const json::object& o, const char* name) {
  auto it = o.find(name);
  if (it == o.end() || !it->value().is_object()) return Error{fmt::format("manifest: missing {}", name)};
  const auto& r = it->value().as_object();
  ObjectRef ref;
  auto s = [&](const char* k) {
    auto x = r.find(k);
    return x != r.end() && x->value().is_string() ? std::string(x->value().as_string()) : std::string();
  };
  ref.bucket = s("bucket");
  ref.key = s("key");
  ref.sha256 = s("sha256");
  if (auto x = r.find("size"); x != r.end() && x->value().is_int64()) ref.size = static_cast<uint64_t>(x->value().as_int64());
  if (auto x = r.find("size"); x != r.end() && x->value().is_uint64()) ref.size = x->value().as_uint64();
  if (ref.bucket.empty() || ref.key.empty() || ref.sha256.size() != 64)
    return Error{fmt::format("manifest: {} reference is incomplete", name)};
  return ref;
}
}  // namespace

std::string serialize_manifest(const Manifest& m) {
  json::object o;
  o["format"] = "holdfast-fallback";
  o["format_version"] = kFormatVersion;
  o["gateway_group_id"] = m.gateway_group_id;
  o["revision"] = m.revision;
  json::object producer;
  producer["hostname"] = m.producer;
  producer["version"] = m.producer_version;
  o["producer"] = std::move(producer);
  o["created_at"] = m.created_at;
  o["heartbeat_at"] = m.heartbeat_at;
  o["resource"] = ref_json(m.resource);
  o["config"] = ref_json(m.config);
  if (!m.hmac.empty()) o["hmac_sha256"] = m.hmac;
  return json::serialize(o);
}

Result<Manifest> parse_manifest(const std::string& text) {
  auto parsed = budgets::parse_json(text, budgets::resource());
  if (!parsed || !parsed->is_object()) return Error{"manifest: not a JSON object"};
  const auto& o = parsed->as_object();
  auto str = [&](const char* k) {
    auto x = o.find(k);
    return x != o.end() && x->value().is_string() ? std::string(x->value().as_string()) : std::string();
  };
  auto num = [&](const char* k) -> int64_t {
    auto x = o.find(k);
    return x != o.end() && x->value().is_int64() ? x->value().as_int64() : 0;
  };
  if (str("format") != "holdfast-fallback") return Error{"manifest: unknown format"};
  if (num("format_version") != kFormatVersion)
    return Error{fmt::format("manifest: unsupported format_version {}", num("format_version"))};
  Manifest m;
  m.gateway_group_id = str("gateway_group_id");
  m.revision = num("revision");
  m.created_at = num("created_at");
  m.heartbeat_at = num("heartbeat_at");
  m.hmac = str("hmac_sha256");
  if (auto p = o.find("producer"); p != o.end() && p->value().is_object()) {
    const auto& po = p->value().as_object();
    if (auto h = po.find("hostname"); h != po.end() && h->value().is_string()) m.producer = std::string(h->value().as_string());
    if (auto h = po.find("version"); h != po.end() && h->value().is_string()) m.producer_version = std::string(h->value().as_string());
  }
  auto r = ref_from(o, "resource");
  if (!r) return Error{r.error()};
  auto c = ref_from(o, "config");
  if (!c) return Error{c.error()};
  m.resource = *r;
  m.config = *c;
  return m;
}

void sign_manifest(Manifest& m, const std::string& signing_key) {
  m.hmac = signing_key.empty() ? std::string() : aws::hex(aws::hmac_sha256(signing_key, m.signing_string()));
}

Status verify_manifest(const Manifest& m, const std::string& gid, const std::string& signing_key) {
  if (auto st = check_manifest(m, gid); !st) return st;
  return verify_signature(m, signing_key);
}

Status check_manifest(const Manifest& m, const std::string& gid) {
  if (m.gateway_group_id != gid)
    return Error{fmt::format("manifest is for gateway group {}, not {}", m.gateway_group_id, gid)};
  if (m.revision <= 0) return Error{"manifest: no revision"};
  // Refused before the download: the objects are held to the document budget.
  for (const ObjectRef* r : {&m.resource, &m.config})
    if (r->size > budgets::kMaxDocumentBytes)
      return Error{fmt::format("manifest: object {} of {} bytes exceeds the limit of {} bytes", r->key, r->size,
                               budgets::kMaxDocumentBytes)};
  return {};
}

Status verify_signature(const Manifest& m, const std::string& signing_key) {
  if (!signing_key.empty()) {
    if (m.hmac.empty()) return Error{"manifest is not signed but fallback_cp.signing_key is set"};
    std::string want = aws::hex(aws::hmac_sha256(signing_key, m.signing_string()));
    // constant-time comparison: a tampering attempt learns nothing from timing
    unsigned diff = want.size() ^ m.hmac.size();
    for (size_t i = 0; i < want.size() && i < m.hmac.size(); ++i) diff |= static_cast<unsigned>(want[i] ^ m.hmac[i]);
    if (diff) return Error{"manifest signature (HMAC) does not match"};
  }
  return {};
}

Result<Loaded> verify_objects(const Manifest& m, const std::string& resource_body, const std::string& config_body) {
  if (auto st = verify_digests(m, resource_body, config_body); !st) return Error{st.error()};
  return parse_objects(m, resource_body, config_body);
}

Status verify_digests(const Manifest& m, const std::string& resource_body, const std::string& config_body) {
  if (aws::sha256_hex(resource_body) != m.resource.sha256) return Error{"resource object digest does not match the manifest"};
  if (aws::sha256_hex(config_body) != m.config.sha256) return Error{"config object digest does not match the manifest"};
  return {};
}

Result<Loaded> parse_objects(const Manifest& m, const std::string& resource_body, const std::string& config_body) {
  Loaded out;
  out.manifest = m;
  // The resource object has the standalone shape: its resources sit two levels deep.
  auto rv = budgets::parse_json(resource_body, budgets::document(budgets::kStandaloneWrapper));
  if (!rv) return Error{"resource object: " + rv.error()};
  if (!rv->is_object()) return Error{"resource object is not a JSON object"};
  for (const auto& [k, v] : rv->as_object())
    if (!v.is_array()) return Error{fmt::format("resource object: {} is not an array", std::string(k))};
  out.resources = std::move(rv->as_object());
  auto cv = budgets::parse_json(config_body, budgets::document(budgets::kStandaloneWrapper));
  if (!cv) return Error{"config object: " + cv.error()};
  if (!cv->is_object()) return Error{"config object is not a JSON object"};
  const auto* cfg = cv->as_object().if_contains("config");
  if (!cfg || !cfg->is_object()) return Error{"config object: missing \"config\""};
  const auto* payload = cfg->as_object().if_contains("config_payload");
  if (!payload || !payload->is_object()) return Error{"config object: missing config_payload"};
  if (const auto* ring = payload->as_object().if_contains("keyring"); ring && ring->is_array())
    for (const auto& k : ring->as_array())
      if (k.is_string()) out.keyring.emplace_back(k.as_string());
  if (const auto* ef = payload->as_object().if_contains("encrypt_fields"); ef && ef->is_bool()) out.encrypt_fields = ef->as_bool();
  return out;
}

}  // namespace holdfast::config::fallback
