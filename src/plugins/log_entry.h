// APISIX's access log entry (apisix/utils/log-util.lua), shared by the
// logger plugins: the full entry (request, response, server, upstream,
// route_id, service_id, consumer, client_ip, start_time, latencies) or a
// custom `log_format` of variables.
//
// A deliberate difference from APISIX: credentials are never shipped. The
// values of Authorization, Proxy-Authorization, Cookie, apikey and X-API-Key
// request headers and of an `apikey` query argument read "[redacted]".
#pragma once
#include <boost/json/object.hpp>

#include <cstddef>
#include <memory>

#include "plugins/plugin.h"

namespace holdfast::plugins::logentry {

// APISIX's MAX_REQ_BODY and MAX_RESP_BODY for the loggers.
constexpr size_t kMaxReqBodyBytes = 524288;
constexpr size_t kMaxRespBodyBytes = 524288;
// The most of a response body a logger keeps per request, whatever
// max_resp_body_bytes says.
constexpr size_t kMaxRespBodyCap = 64 << 20;

struct Options {
  bool include_req_body = false;
  std::shared_ptr<const router::Expr> req_body_expr;  // include_req_body_expr (null: always)
  size_t max_req_body_bytes = kMaxReqBodyBytes;
  bool include_resp_body = false;
  std::shared_ptr<const router::Expr> resp_body_expr;  // include_resp_body_expr (null: always)
  size_t max_resp_body_bytes = kMaxRespBodyBytes;
  const boost::json::object* log_format = nullptr;    // custom format; null: the full entry
};

boost::json::object build(const RequestCtx& ctx, const Options& o);

// Keeps the response headers as they stand in the header_filter phase (the
// upstream's, with the edits of the plugins that ran before): the log
// phase no longer has them.
void capture_response_headers(RequestCtx& ctx);

// A logger's header_filter: captures the response headers and, with
// include_resp_body (and its expression true for this request), asks the
// proxy to keep the first max_resp_body_bytes of the body.
void header_filter(RequestCtx& ctx, const Options& o);

}  // namespace holdfast::plugins::logentry

namespace holdfast::model { class Checker; }

namespace holdfast::plugins::logentry {

// The fields every logger plugin has (log-util's check_log_schema):
// log_format, include_req_body(_expr), include_resp_body(_expr).
struct LoggerFields {
  Options opts;
  boost::json::object log_format;  // opts.log_format points here when set
  bool has_log_format = false;
};
void parse_logger_fields(model::Checker& c, const char* plugin, LoggerFields& out);

// The log_format of the plugin's plugin_metadata (APISIX: used when the
// plugin's own configuration has none).
struct FormatMetadata : Metadata {
  boost::json::object log_format;
};
Result<std::shared_ptr<const Metadata>> parse_format_metadata(const boost::json::object& value, const char* plugin);

// The entry for this request as the plugin's configuration (or its
// metadata's log_format) asks, serialized.
// `mark_no_route`: an entry without route_id gets "no-matched" (http-logger).
std::string entry_for(const RequestCtx& ctx, const LoggerFields& f, const char* plugin, bool mark_no_route = false);

}  // namespace holdfast::plugins::logentry
