// http-logger (priority 410): APISIX's log entry for each request, batched
// (plugins/log_sink.h) and POSTed to `uri` from the control thread as a
// JSON array (`concat_method: json`; one object for batch_max_size 1) or
// JSON lines (`new_line`). A slow or failing collector never holds a
// request: entries queue (bounded, drops counted) and batches retry as
// `max_retry_count` / `retry_delay` say.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/json.hpp>

#include "core/log.h"
#include "http/client.h"
#include "plugins/common.h"
#include "plugins/log_entry.h"
#include "plugins/log_sink.h"

namespace holdfast::plugins {
namespace {

struct Target {
  http::Url url;
  std::string target;  // path?query
  std::string auth_header;
  double timeout = 3;
  bool json_array = true;  // concat_method json
  bool single = false;     // batch_max_size 1: the object itself
  bool ssl_verify = false;
};

struct HttpDestination final : logsink::Destination {
  Target t;
  std::unique_ptr<http::HttpClient> client;

  std::string encode(const std::vector<std::string>& entries) const override {
    if (t.single && entries.size() == 1) return entries[0];
    std::string out = t.json_array ? "[" : "";
    for (size_t i = 0; i < entries.size(); ++i) {
      if (i) out += t.json_array ? "," : "\n";
      out += entries[i];
    }
    if (t.json_array) out += "]";
    return out;
  }

  void send(boost::asio::any_io_executor ex, std::string payload, std::function<void(std::string)> done) override {
    if (!client) {
      http::TlsOptions tls;
      tls.verify = t.ssl_verify;
      client = std::make_unique<http::HttpClient>(ex, t.url, tls);
    }
    http::Headers headers{{"Content-Type", t.json_array ? "application/json" : "text/plain"}};
    if (!t.auth_header.empty()) headers.emplace_back("Authorization", t.auth_header);
    boost::asio::co_spawn(
        ex,
        [this, headers = std::move(headers), payload = std::move(payload),
         done = std::move(done)]() mutable -> boost::asio::awaitable<void> {
          auto r = co_await client->request("POST", t.target, std::move(headers), std::move(payload), t.timeout);
          std::string error;
          if (!r) {
            error = "sending to " + t.url.authority() + ": " + r.error();
          } else if (r->status >= 400) {
            error = "server returned status code[" + std::to_string(r->status) + "] host[" + t.url.host + "] port[" +
                    std::to_string(t.url.port) + "]";
          }
          done(std::move(error));
        },
        boost::asio::detached);
  }
};

class HttpLogger final : public Plugin {
 public:
  logentry::LoggerFields fields;
  std::shared_ptr<logsink::Sink> sink;

  void header_filter(RequestCtx& ctx) const override { logentry::header_filter(ctx, fields.opts); }
  void log(RequestCtx& ctx) const override {
    // As APISIX, an entry without a route says route_id "no-matched".
    logsink::push(*sink, logentry::entry_for(ctx, fields, "http-logger", true));
  }
};

// APISIX's schema leaves other fields open: they are warned about and ignored.
const FieldRules kFields{.implemented = {"uri", "auth_header", "timeout", "log_format", "include_req_body", "include_req_body_expr",
          "include_resp_body", "include_resp_body_expr", "concat_method", "ssl_verify", "name", "batch_max_size",
          "inactive_timeout", "buffer_duration", "max_retry_count", "retry_delay", "max_req_body_bytes",
          "max_resp_body_bytes"}};
const FieldRules kMetadataFields{.implemented = {"log_format"}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<HttpLogger>();
  Checker c(conf, "http-logger");
  c.only(kFields.implemented);
  auto d = std::make_shared<Target>();
  if (auto uri = c.str("uri", true)) {
    auto u = http::Url::parse(*uri);
    if (!u || (u->scheme != "http" && u->scheme != "https") || u->host.empty()) {
      c.fail("property \"uri\" validation failed: failed to match pattern \"^[^\\/]+:\\/\\/([\\da-zA-Z.-]+|\\[[\\da-fA-F:]+\\])(:\\d+)?\" with \"" + *uri + "\"");
    } else {
      d->url = *u;
      d->target = u->path.empty() ? "/" : u->path;
    }
  }
  d->auth_header = c.str("auth_header").value_or("");
  d->timeout = static_cast<double>(c.integer("timeout", false, 1).value_or(3));
  d->json_array = c.one_of("concat_method", {"json", "new_line"}, "json").value_or("json") == "json";
  d->ssl_verify = c.boolean("ssl_verify").value_or(false);
  logentry::parse_logger_fields(c, "http-logger", p->fields);
  p->fields.opts.max_req_body_bytes =
      static_cast<size_t>(c.integer("max_req_body_bytes", false, 1).value_or(logentry::kMaxReqBodyBytes));
  p->fields.opts.max_resp_body_bytes =
      static_cast<size_t>(c.integer("max_resp_body_bytes", false, 1).value_or(logentry::kMaxRespBodyBytes));
  // Each logged request holds this much of its response in memory: bounded
  // here (APISIX sets no maximum), and said so.
  if (p->fields.opts.max_resp_body_bytes > logentry::kMaxRespBodyCap) {
    log::warn("http-logger: max_resp_body_bytes {} is above {}: {} bytes are kept", p->fields.opts.max_resp_body_bytes,
              logentry::kMaxRespBodyCap, logentry::kMaxRespBodyCap);
    p->fields.opts.max_resp_body_bytes = logentry::kMaxRespBodyCap;
  }
  logsink::Batching b;
  b.name = c.str("name").value_or("http logger");
  b.batch_max_size = c.integer("batch_max_size", false, 1).value_or(1000);
  b.inactive_timeout = c.integer("inactive_timeout", false, 1).value_or(5);
  b.buffer_duration = c.integer("buffer_duration", false, 1).value_or(60);
  b.max_retry_count = c.integer("max_retry_count", false, 0).value_or(0);
  b.retry_delay = c.integer("retry_delay", false, 0).value_or(1);
  d->single = b.batch_max_size == 1;
  if (c.failed()) return Error{c.error()};
  // One sink per configuration: the same configuration after a reload keeps
  // its queue (as APISIX keys its batch processors by the conf).
  p->sink = logsink::sink_for("http-logger", json::serialize(conf), b, [d] {
    auto dest = std::make_unique<HttpDestination>();
    dest->t = *d;
    return std::unique_ptr<logsink::Destination>(std::move(dest));
  });
  return std::shared_ptr<const Plugin>(std::move(p));
}

Result<std::shared_ptr<const Metadata>> metadata(const json::object& value) {
  return logentry::parse_format_metadata(value, "http-logger");
}

}  // namespace

extern const PluginDef kHttpLogger{"http-logger", 410, false, &create, nullptr, &metadata, &kFields, &kMetadataFields};

}  // namespace holdfast::plugins
