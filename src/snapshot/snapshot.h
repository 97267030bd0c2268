// The immutable, compiled configuration that workers serve from. Built by
// the config manager on the control thread, published as
// shared_ptr<const Snapshot>; a request keeps its snapshot until it ends.
#pragma once
#include <boost/asio/ip/tcp.hpp>
#include <boost/json/object.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/config.h"
#include "model/resources.h"
#include "plugins/plugin.h"
#include "router/router.h"
#include "tls/cert_table.h"
#include "upstream/balancer.h"

namespace holdfast::dns {
class Resolver;
}
namespace holdfast::tls {
struct ClientContext;  // tls/client_context.h (kept out of every snapshot reader)
}

namespace holdfast::snapshot {

struct CompiledUpstream {
  std::string key;   // identity for pools and health state: "<owner>/<id>"
  std::shared_ptr<const model::Upstream> conf;
  std::unique_ptr<upstream::Balancer> balancer;
  std::vector<std::string> node_keys;  // "host:port" per node (+ "@address" for a name): the keep-alive pool key
  // Where each node is connected to, resolved on the control side (workers
  // never resolve). A node whose name has no address yet is nullopt: it is
  // unusable (502) until the resolver answers and a new snapshot comes.
  // A name with several addresses uses the first (lowest) one.
  std::vector<std::optional<boost::asio::ip::tcp::endpoint>> endpoints;
  // scheme https: the client TLS context (shared by upstreams with the same
  // verify/CA/client certificate); null for plain http.
  std::shared_ptr<tls::ClientContext> tls;
  // checks.active.type https: the probes' context (https_verify_certificate).
  std::shared_ptr<tls::ClientContext> check_tls;
  std::string tls_error;  // why the TLS context could not be built (routes answer 502)
};

struct CompiledRoute {
  std::string id;
  std::shared_ptr<const model::Route> conf;
  plugins::Chain chain;                        // route > plugin_config > service, merged
  std::shared_ptr<CompiledUpstream> upstream;  // null: see upstream_error
  int upstream_error = 0;                      // 502/503 when there is no usable upstream
  std::string upstream_error_msg;
  model::Timeout timeout;
  bool websocket = false;
  bool service_missing = false;                // service_id names no service: answers nginx's 404 page
  std::string service_name;                    // the service's `name` (prometheus' prefer_name)
};


struct Snapshot {
  uint64_t version = 0;          // increases with every publish
  std::string source;            // "file", "etcd", "s3", "azure_blob", "gcs", "cache"
  std::string revision;          // source revision (etcd revision, file mtime, ...)
  int64_t applied_unix_ms = 0;   // when the manager published it
  std::vector<CompiledRoute> routes;
  router::Router router;
  plugins::Chain global;         // global_rules' plugins
  // Some route's vars read post_arg_* or post_arg.*: requests have their
  // body read before routing (Connection::read_body_for_router).
  bool router_reads_body = false;
  std::unordered_map<std::string, std::shared_ptr<CompiledUpstream>> upstreams;
  // traffic-split's inline upstreams (its upstream_id references are in
  // `upstreams`), for the health checker and for health kept across reloads.
  std::vector<std::shared_ptr<CompiledUpstream>> split_upstreams;
  plugins::ConsumerIndex consumers;
  plugins::MetadataTable metadata;  // plugin_metadata, compiled; plugins read it per request
  // ssls, indexed by SNI for the TLS listener (never null once compiled).
  // A bad SSL object is left out there with its own log line; it does not
  // count in `skipped`, so it never makes a strict snapshot fail.
  std::shared_ptr<const tls::CertTable> certificates;
  // Upstream client TLS contexts by identity, built once and carried over
  // to the next snapshot while some upstream still uses them.
  std::unordered_map<std::string, std::shared_ptr<tls::ClientContext>> client_contexts;
  std::vector<std::string> plugin_list;  // the document's enabled-plugin list, when it has one
  std::vector<std::string> dns_names;    // node hosts that are names (resolved by dns::Resolver), sorted
  // Objects left out because a secret reference ($env://) in them could not
  // be resolved on this node (each with a log line). Not in `skipped`: the
  // document is valid, this node's environment is not complete.
  size_t unresolved = 0;
  // A global rule's secret reference could not be resolved: every request
  // is answered 503 rather than served without that rule's plugins.
  bool global_unavailable = false;
  // Fields Holdfast ignores, each named ("routes/1: plugin cors: unknown
  // field x ..."): logged when new since the previous snapshot, printed by
  // `holdfast -t`.
  std::vector<std::string> warnings;
  size_t skipped = 0;            // resources rejected while compiling
  std::string first_error;       // "<type> <id>: <reason>" of the first rejected resource
};

// Builds a snapshot from a standalone-shaped document
// ({"routes":[...],"upstreams":[...],...}). Invalid resources are skipped
// and logged with type, id and reason; a document that is not an object is
// an error. `health` carries node health across reloads for upstreams whose
// nodes did not change.
struct CompileOptions {
  RouterKind router = RouterKind::radixtree_host_uri;
  int workers = 1;
  std::vector<std::string> enabled_plugins;
  const Snapshot* previous = nullptr;
  // Node addresses for names; without one only IP literals have addresses.
  dns::Resolver* resolver = nullptr;
  // apisix.ssl.ssl_trusted_certificate: the CAs upstream TLS verifies with.
  std::string trusted_certificate = "system";
  // Decrypts an upstream tls.client_key that is not PEM (a standalone file
  // carries it as the Admin API stored it); null: none.
  const data_encryption::Keyring* keyring = nullptr;
};
Result<std::shared_ptr<Snapshot>> compile_snapshot(const boost::json::value& doc, const CompileOptions& opts);

}  // namespace holdfast::snapshot
