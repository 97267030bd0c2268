// libFuzzer target: the fallback snapshot format read from S3. The input up
// to the first NUL is a manifest (parse_manifest, verify_manifest); what a
// manifest names is checked against the rest (a resource object and a config
// object separated by the next NUL) with matching digests, so the object
// checks in verify_objects run too. A manifest that parses survives a
// serialise/parse round trip unchanged.
#include <cstdint>
#include <string>
#include <string_view>

#include "cloud/aws/sigv4.h"
#include "config/fallback/snapshot_format.h"
#include "harness.h"

namespace fb = holdfast::config::fallback;
using fuzz::check;

namespace {

bool same(const fb::ObjectRef& a, const fb::ObjectRef& b) {
  return a.bucket == b.bucket && a.key == b.key && a.sha256 == b.sha256 && a.size == b.size;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t nul = in.find('\0');
  std::string manifest_text(in.substr(0, nul));
  std::string_view rest = nul == std::string_view::npos ? std::string_view() : in.substr(nul + 1);
  size_t nul2 = rest.find('\0');
  std::string resource_body(rest.substr(0, nul2));
  std::string config_body(nul2 == std::string_view::npos ? std::string_view() : rest.substr(nul2 + 1));

  auto m = fb::parse_manifest(manifest_text);
  if (m) {
    (void)fb::verify_manifest(*m, "default", "");
    (void)fb::verify_manifest(*m, m->gateway_group_id, "signing-key");
    auto again = fb::parse_manifest(fb::serialize_manifest(*m));
    check(again.ok());
    check(again->gateway_group_id == m->gateway_group_id && again->revision == m->revision &&
          again->created_at == m->created_at && again->heartbeat_at == m->heartbeat_at &&
          again->producer == m->producer && again->producer_version == m->producer_version &&
          again->hmac == m->hmac && same(again->resource, m->resource) && same(again->config, m->config));
  }

  fb::Manifest named;
  named.resource.sha256 = holdfast::aws::sha256_hex(resource_body);
  named.config.sha256 = holdfast::aws::sha256_hex(config_body);
  auto loaded = fb::verify_objects(named, resource_body, config_body);
  if (loaded)
    for (const auto& [k, v] : loaded->resources) check(v.is_array());
  return 0;
}
