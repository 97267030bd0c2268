#include "cli/snapshot_cli.h"

#include <fmt/format.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "config/fallback/fallback.h"
#include "config/fallback/snapshot_store.h"
#include "snapshot/snapshot.h"
#include "core/budgets.h"
#include "core/config.h"
#include "core/data_encryption.h"
#include "core/log.h"
#include "tls/cert_metrics.h"
#include "tls/cert_table.h"

namespace holdfast::cli {
namespace asio = boost::asio;
namespace json = boost::json;
using namespace holdfast::config::fallback;

namespace {

void usage() {
  std::puts(
      "Usage: holdfast snapshot COMMAND -c CONFIG [options]\n"
      "\n"
      "  inspect            show the manifest in the resource bucket (revision, age, objects) and\n"
      "                     the snapshot's SSL objects (ids, SNIs, certificate expiry; never keys)\n"
      "  verify             fetch the snapshot and check digests, signature and every resource\n"
      "  pull [-o FILE]     download it as a standalone apisix.json (fields decrypted), stdout by default\n"
      "  push -i FILE [--revision N]\n"
      "                     upload a standalone apisix.json as a new snapshot (revision N, default\n"
      "                     the bucket's revision + 1; never lower than the bucket's)\n"
      "\n"
      "  --store NAME       the store to act on: aws_s3, azure_blob or gcs (its key under fallback_cp);\n"
      "                     required when several are configured\n");
}

// Ids, reasons and arguments reach a terminal: no control characters.
std::string shown(std::string t) {
  for (char& c : t)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '_';
  return t;
}

int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct Args {
  std::string command, config = "conf/config.yaml", out, in, store;
  int64_t revision = 0;
};

// The snapshot's SSL objects as a traffic node would compile them (keys
// decrypted with the snapshot's keyring, then the local one), one line per
// certificate: id, key type, expiry, SNIs. Keys are never printed, and the
// reasons for a left-out object come from CertTable, which never quotes one.
asio::awaitable<int> print_ssls(Store& store, const NodeConfig& cfg) {
  auto fetched = co_await fetch_snapshot(store, cfg.fallback.gateway_group_id, cfg.fallback.signing_key);
  if (!fetched.ok()) {
    std::fprintf(stderr, "holdfast: snapshot invalid: %s\n", fetched.error.c_str());
    co_return 1;
  }
  const Loaded& loaded = *fetched.snapshot;
  data_encryption::Keyring ring = loaded.keyring;
  for (const auto& k : cfg.keyring) ring.push_back(k);
  const json::value* v = loaded.resources.if_contains("ssls");
  const json::array* arr = v && v->is_array() ? &v->as_array() : nullptr;
  tls::CertTable::Options opts;
  opts.keyring = &ring;
  log::set_level(log::Level::error);
  auto table = tls::CertTable::build(arr, opts);
  const int64_t now = now_unix();
  std::printf("ssls:            %zu\n", arr ? arr->size() : 0);
  for (const auto& o : table->objects()) {
    std::string snis;
    for (const auto& s : o->snis) snis += (snis.empty() ? "" : ",") + s;
    const char* state = !o->server ? " (type client)" : !o->enabled ? " (status 0)" : "";
    for (const auto& c : o->certificates) {
      const int64_t days = (c.not_after - now) / 86400;
      std::printf("  ssl %s%s: %s, expires %s (%s), snis %s\n", shown(o->id).c_str(), state, c.key_type.c_str(),
                  tls::utc_time(c.not_after).c_str(),
                  c.not_after <= now ? "expired" : fmt::format("in {} days", days).c_str(),
                  snis.empty() ? "-" : snis.c_str());
    }
  }
  for (const auto& p : table->problems())
    std::printf("  ssl %s: not usable: %s\n", shown(p.ssl_id).c_str(), shown(p.reason).c_str());
  co_return 0;
}

asio::awaitable<int> run(const Args& a, const NodeConfig& cfg, asio::io_context& io) {
  const auto& f = cfg.fallback;
  Store store = make_store(io, f, a.store);
  if (a.command == "inspect") {
    auto r = co_await store.client->get(store.resource_bucket, manifest_key(f.gateway_group_id));
    if (!r.ok()) {
      std::fprintf(stderr, "holdfast: %s\n", r.error.message.c_str());
      co_return 1;
    }
    auto m = parse_manifest(r.value->body);
    if (!m) {
      std::fprintf(stderr, "holdfast: %s\n", m.error().c_str());
      co_return 1;
    }
    std::printf("gateway group:   %s\nrevision:        %lld\nproducer:        %s (holdfast %s)\n", m->gateway_group_id.c_str(),
                static_cast<long long>(m->revision), m->producer.c_str(), m->producer_version.c_str());
    std::printf("created:         %lld (%lld s ago)\nheartbeat:       %lld (%lld s ago)\n",
                static_cast<long long>(m->created_at), static_cast<long long>(now_unix() - m->created_at),
                static_cast<long long>(m->heartbeat_at), static_cast<long long>(now_unix() - m->heartbeat_at));
    std::printf("resources:       %s (%llu bytes, sha256 %s)\n",
                store.client->url(m->resource.bucket, m->resource.key).c_str(),
                static_cast<unsigned long long>(m->resource.size), m->resource.sha256.c_str());
    std::printf("config:          %s (%llu bytes, sha256 %s)\n", store.client->url(m->config.bucket, m->config.key).c_str(),
                static_cast<unsigned long long>(m->config.size), m->config.sha256.c_str());
    std::printf("signed:          %s\n", m->hmac.empty() ? "no" : "yes (HMAC-SHA256)");
    co_return co_await print_ssls(store, cfg);
  }
  if (a.command == "verify" || a.command == "pull") {
    auto fetched = co_await fetch_snapshot(store, f.gateway_group_id, f.signing_key);
    if (!fetched.ok()) {
      std::fprintf(stderr, "holdfast: snapshot invalid: %s\n", fetched.error.c_str());
      co_return 1;
    }
    const Loaded* loaded = &*fetched.snapshot;
    std::vector<std::string> ring = loaded->keyring;
    for (const auto& k : cfg.keyring) ring.push_back(k);
    json::object plain = loaded->resources;
    data_encryption::decrypt_document(plain, ring);
    snapshot::CompileOptions opts;
    opts.router = cfg.router;
    opts.enabled_plugins = cfg.plugins;
    log::set_level(log::Level::error);
    auto snap = snapshot::compile_snapshot(json::value(plain), opts);
    if (!snap || (*snap)->skipped) {
      std::fprintf(stderr, "holdfast: snapshot revision %lld is not valid: %s\n",
                   static_cast<long long>(loaded->manifest.revision), snap ? (*snap)->first_error.c_str() : snap.error().c_str());
      co_return 1;
    }
    if (a.command == "verify") {
      std::printf("snapshot revision %lld is valid: %zu routes, %zu upstreams, %zu consumers; digests%s match\n",
                  static_cast<long long>(loaded->manifest.revision), (*snap)->routes.size(), (*snap)->upstreams.size(),
                  (*snap)->consumers.by_name.size(), loaded->manifest.hmac.empty() ? "" : " and signature");
      co_return 0;
    }
    std::string body = json::serialize(plain) + "\n";
    if (a.out.empty() || a.out == "-") {
      std::fwrite(body.data(), 1, body.size(), stdout);
    } else {
      std::ofstream out(a.out, std::ios::binary);
      out << body;
      if (!out) {
        std::fprintf(stderr, "holdfast: cannot write %s\n", a.out.c_str());
        co_return 1;
      }
      std::fprintf(stderr, "holdfast: wrote revision %lld to %s\n", static_cast<long long>(loaded->manifest.revision),
                   a.out.c_str());
    }
    co_return 0;
  }
  // push
  std::ifstream in(a.in, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "holdfast: cannot read %s\n", a.in.c_str());
    co_return 1;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  const budgets::Document budget = budgets::document(budgets::kStandaloneWrapper);
  auto parsed = budgets::parse_json(text, budget);
  if (!parsed || !parsed->is_object()) {
    std::fprintf(stderr, "holdfast: %s is not a JSON object%s%s\n", a.in.c_str(), parsed ? "" : ": ",
                 parsed ? "" : parsed.error().c_str());
    co_return 1;
  }
  json::value doc = std::move(*parsed);
  snapshot::CompileOptions opts;
  opts.router = cfg.router;
  log::set_level(log::Level::error);
  auto snap = snapshot::compile_snapshot(doc, opts);
  if (!snap || (*snap)->skipped) {
    std::fprintf(stderr, "holdfast: %s is not valid: %s\n", a.in.c_str(), snap ? (*snap)->first_error.c_str() : snap.error().c_str());
    co_return 1;
  }
  // The store's manifest decides the revision; the shared writer refuses
  // one that is not above it, whatever -r says.
  auto cur = co_await read_manifest(store, f.gateway_group_id);
  if (!cur.ok()) {
    std::fprintf(stderr, "holdfast: %s\n", cur.error.message.c_str());
    co_return 1;
  }
  const int64_t current = cur.value->manifest ? cur.value->manifest->revision : 0;
  const int64_t revision = a.revision ? a.revision : current + 1;
  SnapshotWriter writer(store, f.gateway_group_id, f.signing_key, WriteMode::push);
  WriteOutcome out;
  if (revision > 0) {
    SnapshotContent content;
    content.resource_body = json::serialize(resource_object(doc.as_object()));
    content.config_body = config_object(revision, cfg.keyring, cfg.encrypt_fields);
    content.revision = revision;
    content.producer = hostname() + " (holdfast snapshot push)";
    out = co_await writer.write(content, *cur.value);
  } else {
    out.kind = WriteOutcome::Kind::newer_in_store;
    out.store_revision = current;
  }
  if (out.kind == WriteOutcome::Kind::newer_in_store) {
    std::fprintf(stderr, "holdfast: the bucket holds revision %lld; refusing to push revision %lld\n",
                 static_cast<long long>(out.store_revision), static_cast<long long>(revision));
    co_return 1;
  }
  if (out.kind != WriteOutcome::Kind::written) {
    std::fprintf(stderr, "holdfast: %s\n", out.error.message.c_str());
    co_return 1;
  }
  std::printf("pushed revision %lld (%zu routes) to %s\n", static_cast<long long>(revision), (*snap)->routes.size(),
              store.client->url(store.resource_bucket, manifest_key(f.gateway_group_id)).c_str());
  co_return 0;
}

}  // namespace

int snapshot_main(int argc, char** argv) {
  Args a;
  for (int i = 0; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "-h" || s == "--help") { usage(); return 0; }
    if ((s == "-c" || s == "--config") && i + 1 < argc) a.config = argv[++i];
    else if ((s == "-o" || s == "--out") && i + 1 < argc) a.out = argv[++i];
    else if ((s == "-i" || s == "--in") && i + 1 < argc) a.in = argv[++i];
    else if (s == "--revision" && i + 1 < argc) a.revision = std::atoll(argv[++i]);
    else if (s == "--store" && i + 1 < argc) a.store = argv[++i];
    else if (a.command.empty()) a.command = s;
    else { usage(); return 2; }
  }
  if (a.command != "inspect" && a.command != "verify" && a.command != "pull" && a.command != "push") { usage(); return 2; }
  if (a.command == "push" && a.in.empty()) { std::fputs("holdfast: push needs -i FILE\n", stderr); return 2; }
  auto cfg = load_node_config(a.config);
  if (!cfg) {
    std::fprintf(stderr, "holdfast: %s: %s\n", a.config.c_str(), cfg.error().c_str());
    return 1;
  }
  if (!cfg->fallback.enabled) {
    std::fprintf(stderr, "holdfast: %s has no deployment.fallback_cp section\n", a.config.c_str());
    return 1;
  }
  const auto& stores = cfg->fallback.stores;
  std::string names;
  for (const auto& n : stores) names += (names.empty() ? "" : ", ") + n;
  if (a.store.empty() && stores.size() > 1) {
    std::fprintf(stderr, "holdfast: %s configures several stores (%s): choose one with --store NAME\n", a.config.c_str(),
                 names.c_str());
    return 2;
  }
  if (a.store.empty()) a.store = stores.front();
  if (std::find(stores.begin(), stores.end(), a.store) == stores.end()) {
    std::fprintf(stderr, "holdfast: --store %s is not configured in %s (configured: %s)\n", shown(a.store).c_str(),
                 a.config.c_str(), names.c_str());
    return 2;
  }
  asio::io_context io;
  int rc = 1;
  NodeConfig c = *cfg;
  asio::co_spawn(io, run(a, c, io), [&](std::exception_ptr e, int r) {
    rc = e ? 1 : r;
  });
  io.run();
  return rc;
}

}  // namespace holdfast::cli
