// The plugin interface (APISIX phases) and the per-request context that
// travels through them. A plugin instance is built once from its validated
// config and shared read-only by every worker; per-request state lives in
// RequestCtx.
#pragma once
#include <boost/json/object.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/status.h"
#include "http/codec.h"
#include "http/graphql.h"
#include "router/expr.h"
#include "router/router.h"
#include "router/vars.h"

namespace holdfast::model {
struct Consumer;
struct Route;
}
namespace holdfast::snapshot {
struct CompiledUpstream;
}

namespace holdfast::plugins {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct Consumer;
struct ConsumerIndex;
struct MetadataTable;
class Plugin;
struct FieldRules;
struct SideRequest;   // plugins/side_request.h
struct SideResponse;

// A header a plugin put on a head, with the plugin that put it there: the
// log line names it if the head writer ever refuses the field.
struct HeaderEdit {
  std::string name, value;
  const char* plugin = nullptr;  // nullptr: Holdfast itself (e.g. a 404's Content-Type)
};
using HeaderEdits = std::vector<HeaderEdit>;

// Work a plugin leaves for the end of its request (limit-conn's leaving),
// run when the request's context is destroyed: after the response was sent,
// a tunnel closed, the client went away or an error ended the request alike.
// Not copyable, so that nothing runs twice.
class EndActions {
 public:
  EndActions() = default;
  EndActions(const EndActions&) = delete;
  EndActions& operator=(const EndActions&) = delete;
  ~EndActions() {
    for (auto& f : fns_) f();
  }
  void add(std::function<void()> f) { fns_.push_back(std::move(f)); }

 private:
  std::vector<std::function<void()>> fns_;
};

struct RequestCtx final : router::VarSource {
  const http::RequestHead* req = nullptr;
  std::string uri;              // decoded path used for matching ($uri)
  std::string remote_addr;       // the client: the peer, or what real_ip_header said (nginx's realip)
  uint16_t remote_port = 0;
  std::string_view realip_remote_addr;  // the peer's own address (the connection outlives the request)
  // apisix.trusted_addresses holds the peer: the X-Forwarded-Proto/Host/Port
  // and Forwarded it sent are kept; otherwise they read as this hop's values.
  bool forwarded_trusted = false;
  // apisix.trusted_addresses is set and does not hold the peer: its
  // X-Forwarded-For is dropped (plugins and vars no longer see it either).
  bool xff_dropped = false;
  uint16_t server_port = 0;
  std::string scheme = "http";
  bool http2 = false;  // the request came on an HTTP/2 stream ($server_protocol)
  const router::TlsVars* tls = nullptr;  // null on plain HTTP (the $ssl_* variables are then unset)
  uint16_t https_port = 0;      // where redirect's http_to_https sends (0: leave the port out)
  std::string host;             // lowercase, without port
  std::string_view route_id;             // empty when no route matched
  const model::Route* route = nullptr;   // the matched route's resource (null: none)
  std::string_view service_name;         // its service's `name`, if any
  std::string_view service_id;           // the matched route's service (empty: none)
  router::Params params;
  const ConsumerIndex* consumers = nullptr;  // of the snapshot serving this request
  const MetadataTable* metadata = nullptr;   // plugin_metadata of that snapshot (null: none)
  const Consumer* consumer = nullptr;        // set by an auth plugin
  // Where the request goes instead of the route's upstream (traffic-split);
  // null: the route's. Owned by the snapshot this request holds.
  snapshot::CompiledUpstream* upstream_override = nullptr;
  int worker = 0;

  // The plugin whose hook is running (set by the chain runner): every edit
  // below records it.
  const char* plugin = nullptr;

  // Edits to the request sent upstream (proxy-rewrite, auth plugins), made
  // through the setters below so that each records its plugin.
  std::optional<std::string> upstream_target;   // path?query, already encoded
  std::optional<std::string> upstream_method;
  std::optional<std::string> upstream_host;     // Host header override
  // The query string after a plugin changed it (APISIX's
  // core.request.set_uri_args, e.g. key-auth's hide_credentials); unset: the
  // client's. $args, $arg_* and the upstream request follow it.
  std::optional<std::string> args;
  const char* upstream_target_by = nullptr;
  const char* upstream_method_by = nullptr;
  const char* upstream_host_by = nullptr;
  HeaderEdits req_set;                          // replace (or add) these headers
  HeaderEdits req_add;
  std::vector<std::string> req_remove;

  // A response produced by a plugin (Action::respond).
  int resp_status = 0;
  std::string resp_body;
  HeaderEdits resp_headers;

  // Edits to the upstream's response (header_filter phase).
  // The upstream's response head while header and body filters run (null
  // for a response a plugin made): what it said, before the edits below.
  const http::ResponseHead* upstream_resp = nullptr;
  // The node that answered: $balancer_ip, $balancer_port, $upstream_addr.
  std::string balancer_ip;
  uint16_t balancer_port = 0;
  // Plugins whose header_filter decided to rewrite this response's body (a
  // decision taken once, before later plugins change what `vars` would see).
  std::vector<const Plugin*> body_filters_on;
  int upstream_status = 0;
  std::optional<int> resp_status_override;
  std::optional<std::string> resp_body_override;
  HeaderEdits resp_set, resp_add;
  std::vector<std::string> resp_remove;
  bool response_from_plugin = false;

  // Set by a plugin to make the connection wait before the next plugin runs
  // (fault-injection delay, mocking delay) without blocking the worker.
  double delay_seconds = 0;

  // An HTTP request a plugin asks the pipeline to send for it (forward-auth's
  // auth service, proxy-mirror's copy), so that no plugin does I/O on the
  // worker: with Action::call the pipeline sends it, waits and hands the
  // result to the same plugin's resume(); a `detached` one (returned with
  // Action::next) is sent on its own later and never waited for.
  std::shared_ptr<SideRequest> side;

  std::string request_id;
  std::chrono::steady_clock::time_point start;
  EndActions at_end;

  // What the log phase sees ($status, $request_length, $bytes_sent,
  // $upstream_response_time), filled in just before it runs.
  int status = 0;
  uint64_t request_length = 0;  // request head + body bytes read from the client
  uint64_t bytes_sent = 0;      // response head + body bytes written to the client
  double upstream_ms = -1;      // from connecting upstream to the response's end; <0: no upstream answered
  // The request body when it was read whole before the log phase (empty
  // otherwise: it streamed through, or there was none).
  std::string_view req_body_seen;
  // The response headers as a logger's header_filter saw them (the log
  // phase no longer has the response head).
  HeaderList logged_resp_headers;
  bool resp_headers_captured = false;
  // A logger's include_resp_body: its header_filter asks for the first this
  // many bytes of the response body as the client gets it (chunk framing
  // removed, still content-encoded); the proxy copies them into
  // resp_body_seen while the body streams through.
  size_t resp_body_keep = 0;
  std::string resp_body_seen;

  // The whole request body, when the snapshot's route vars read it
  // (post_arg_*, post_arg.*: the router needs it before matching) and it
  // fits apisix.max_post_args_readable_size; null otherwise, and then those
  // variables are unset.
  const std::string_view* body = nullptr;
  // The body parsed as a table for post_arg.* (JSON or form), once.
  mutable std::optional<boost::json::value> body_table;
  mutable bool body_table_tried = false;
  // The request's GraphQL document, summarised once (graphql_* variables).
  mutable std::optional<std::optional<http::GraphqlSummary>> graphql;
  uint64_t graphql_max_size = 1 << 20;  // graphql.max_size

  std::optional<std::string> var(std::string_view name) const override;
  const boost::json::value* post_body_table() const;
  const http::GraphqlSummary* graphql_summary() const;
  void set_upstream_target(std::string target);  // the caller encodes it (proxy-rewrite: uri_safe_encode)
  void set_upstream_method(std::string method);
  void set_upstream_host(std::string host);
  std::string_view query() const {
    return args ? std::string_view(*args) : req ? req->query : std::string_view();
  }
  // Replaces the query string (set_uri_args), keeping the upstream path.
  void set_query(std::string query);
  // Header edits. Names and values are escaped as OpenResty escapes what
  // ngx.header and ngx.req.set_header get (http/head_writer.h), so a
  // control character a value picked up from $uri goes out as %XX. "set"
  // replaces an earlier set of the same header (a consumer's plugin
  // overrides the route's); "add" appends.
  // Request headers follow ngx.req.set_header / add_header / clear_header,
  // applied in call order: a set drops what earlier adds put on that header,
  // a set to "" removes the header (as ngx.req.set_header does), a remove
  // drops earlier sets and adds too, and a later add puts it back.
  void set_request_header(std::string name, std::string value);
  void add_request_header(std::string name, std::string value);
  void remove_request_header(std::string name);
  // Response headers follow ngx.header: a set replaces the upstream's and
  // earlier plugins' values (adds included), a remove drops them all.
  void set_response_header(std::string name, std::string value);
  void add_response_header(std::string name, std::string value);
  void remove_response_header(std::string name);
  // A header of the response a plugin answers with (Action::respond).
  void add_reply_header(std::string name, std::string value);
  // X-Forwarded-Proto/Host/Port as APISIX leaves them in the request (its
  // ngx_tpl overwrites them before any plugin runs; a trusted peer's own
  // non-empty values are put back): `which` is 'p'roto, 'h'ost or 'P'ort.
  // The view points into the request, this context or `scratch`.
  std::string_view forwarded(char which, std::string& scratch) const;
  // Header value as seen by plugins (edits applied), empty optional if unset.
  std::optional<std::string> request_header(std::string_view name) const;
  // Sets a response a plugin answers with, JSON body `{"message":...}` style.
  void respond(int status, std::string body, std::string content_type = "application/json");
};

// What a phase hook tells the chain: go on, or stop and send ctx.resp_*.
enum class Action : uint8_t {
  next,     // continue with the next plugin / phase
  respond,  // stop: the response in ctx.resp_status/resp_body is sent
  call,     // wait for ctx.side's answer, then this plugin's resume() decides
};

class Plugin {
 public:
  virtual ~Plugin() = default;
  virtual Action rewrite(RequestCtx&) const { return Action::next; }
  virtual Action access(RequestCtx&) const { return Action::next; }
  // After Action::call: the answer to ctx.side (or why there is none).
  virtual Action resume(RequestCtx&, const SideResponse&) const { return Action::next; }
  virtual void header_filter(RequestCtx&) const {}
  // Plugins that rewrite the response body ask for it whole, up to the
  // number of bytes returned (0: not wanted); the proxy then buffers that
  // much of it (the largest of the plugins' bounds), drops the rest and
  // calls body_filter before sending.
  virtual size_t wants_body(const RequestCtx&) const { return 0; }
  virtual void body_filter(RequestCtx&, std::string& body) const {}
  // Plugins that read the request body whole in rewrite (hmac-auth's
  // validate_request_body) ask for it up to the number of bytes returned (0:
  // not wanted); the proxy then reads it, without blocking the worker,
  // before its chain's rewrite runs, and ctx.body holds it. A larger body
  // is left to stream: ctx.body stays null.
  virtual uint64_t wants_request_body(const RequestCtx&) const { return 0; }
  virtual void log(RequestCtx&) const {}
};

// A plugin's compiled plugin_metadata (APISIX's metadata_schema): one per
// plugin and snapshot, read by that plugin's instances at request time.
struct Metadata {
  virtual ~Metadata() = default;
};

// What an auth plugin compiled from its config on one consumer or credential
// (a parsed public key, a decoded secret), kept beside the consumer in the
// snapshot's credential index so that requests never parse it again.
struct Credential {
  virtual ~Credential() = default;
};

struct PluginDef {
  const char* name;
  int priority;
  bool is_auth;
  // Validates `conf` (without `_meta`) and builds the shared instance.
  Result<std::shared_ptr<const Plugin>> (*create)(const boost::json::object& conf,
                                                  const std::string& scope);
  // Validates the plugin's config on a consumer (auth plugins only).
  Status (*check_consumer)(const boost::json::object& conf) = nullptr;
  // Validates a plugin_metadata value (its `id` removed) against the
  // plugin's metadata schema and compiles it. Null: the plugin reads no
  // metadata, and any object is accepted (APISIX injects an empty schema).
  Result<std::shared_ptr<const Metadata>> (*metadata)(const boost::json::object& value) = nullptr;
  // The fields APISIX's schema has (plugins/common.h): compile_chain
  // screens a configuration with them before `create` sees it, warning about
  // what it ignores. Null: `create` alone decides.
  const FieldRules* fields = nullptr;
  // The same for the plugin_metadata value (with `metadata`).
  const FieldRules* metadata_fields = nullptr;
  // Auth plugins: the field of the consumer's config whose value finds the
  // consumer (APISIX's find_consumer key: key-auth `key`, basic-auth
  // `username`, jwt-auth `key`); null: the plugin indexes no consumers.
  const char* credential_key = nullptr;
  // Compiles the (already checked) consumer config into what the plugin
  // reads per request; null: the plugin needs only the consumer.
  Result<std::shared_ptr<const Credential>> (*compile_credential)(const boost::json::object& conf) = nullptr;
  // Auth plugins: the fields of APISIX's consumer_schema, screened as
  // `fields` are (warnings name what is ignored) before check_consumer.
  const FieldRules* consumer_fields = nullptr;
};

const PluginDef* find_plugin(std::string_view name);
const std::vector<const PluginDef*>& all_plugins();

// One configured plugin in a chain.
struct Entry {
  const PluginDef* def;
  std::shared_ptr<const Plugin> plugin;
  int priority;
  std::shared_ptr<const router::Expr> filter;  // _meta.filter
  std::string error_response;                   // _meta.error_response (serialized)
  bool has_error_response = false;
};

// Plugins of one object, sorted by priority (highest first).
struct Chain {
  std::vector<Entry> entries;
  bool empty() const { return entries.empty(); }
};

// A consumer as requests see it: its resource and the non-auth plugins it
// and its group add to the requests it authenticates (the consumer's win
// over its group's, as APISIX's merge_consumer_route).
struct Consumer {
  std::shared_ptr<const model::Consumer> conf;
  Chain chain;
  // group_id names no consumer group: APISIX answers 503 once such a
  // consumer is authenticated (logged when the snapshot was compiled).
  bool group_missing = false;
};

// One consumer (or credential) found by an auth plugin's key.
struct CredentialHit {
  const Consumer* consumer = nullptr;
  std::shared_ptr<const Credential> credential;  // what compile_credential built (may be null)
};

// The consumers of one snapshot, for auth plugins to look credentials up in.
struct ConsumerIndex {
  std::unordered_map<std::string, std::shared_ptr<Consumer>> by_name;
  // auth plugin name -> credential key -> consumer
  std::unordered_map<std::string, std::unordered_map<std::string, CredentialHit>> by_credential;
  // O(1): the consumer whose `plugin` config has `key` as its credential key.
  const CredentialHit* find(const std::string& plugin, const std::string& key) const {
    auto p = by_credential.find(plugin);
    if (p == by_credential.end()) return nullptr;
    auto c = p->second.find(key);
    return c == p->second.end() ? nullptr : &c->second;
  }
};

// The plugin_metadata of one snapshot, by plugin. A plugin without an entry
// uses its defaults.
struct MetadataTable {
  std::vector<std::pair<const PluginDef*, std::shared_ptr<const Metadata>>> entries;
  const Metadata* find(std::string_view plugin) const {
    for (const auto& [def, m] : entries)
      if (plugin == def->name) return m.get();
    return nullptr;
  }
  // The metadata of `plugin` as its own type (each plugin knows what it built).
  template <class T>
  static const T* of(const RequestCtx& ctx, std::string_view plugin) {
    return ctx.metadata ? static_cast<const T*>(ctx.metadata->find(plugin)) : nullptr;
  }
};

// Validates one plugin_metadata value (`id` = the plugin name) for the Admin
// API and the snapshot compiler: the plugin must exist and be enabled, and the
// value must pass its metadata schema. Errors are APISIX's messages
// ("invalid plugin name", "invalid configuration: ..."). Fields it ignores
// are named in `warnings` ("plugin_metadata/cors: unknown field x ...").
Result<std::pair<const PluginDef*, std::shared_ptr<const Metadata>>> compile_metadata(
    const boost::json::object& value, const std::vector<std::string>& enabled,
    std::vector<std::string>* warnings = nullptr);

// Compiles a `plugins` object: unknown or disabled-by-config plugins and
// invalid configs are errors naming the plugin. `_meta.disable` drops it.
// `scope` names the owning resource (used for counters that must survive
// reloads, e.g. limit-count, and in warnings). Fields a plugin ignores are
// named in `warnings` ("routes/1: plugin cors: unknown field x ...").
Result<Chain> compile_chain(const boost::json::object& plugins, const std::vector<std::string>& enabled,
                            const std::string& scope, std::vector<std::string>* warnings = nullptr);

// Checks an auth plugin's configuration on a consumer or credential: its
// consumer_fields screen (what is ignored is named in `warnings`, as
// "<scope>: plugin <name>: ..."), then check_consumer. Errors are the
// plugin's own message.
Status check_consumer_conf(const PluginDef& def, const boost::json::object& conf, const std::string& scope,
                           std::vector<std::string>* warnings);

}  // namespace holdfast::plugins
