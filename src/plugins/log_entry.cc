#include "plugins/log_entry.h"

#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>

#include "core/log.h"
#include "http/content_decode.h"
#include "model/resources.h"
#include "plugins/common.h"

namespace holdfast::plugins::logentry {
namespace {

bool credential_header(std::string_view name) {
  static constexpr std::string_view kNames[] = {"authorization", "proxy-authorization", "cookie", "apikey",
                                                "x-api-key"};
  for (auto n : kNames)
    if (name.size() == n.size() &&
        std::equal(name.begin(), name.end(), n.begin(), [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; }))
      return true;
  return false;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// ngx.req.get_headers / ngx.resp.get_headers: lowercase names, a repeated
// header as a list.
template <class List>
json::object header_table(const List& headers, bool redact) {
  json::object out;
  for (const auto& h : headers) {
    std::string name = lower(h.first);
    json::value v = redact && credential_header(name) ? json::value("[redacted]") : json::value(std::string(h.second));
    auto it = out.find(name);
    if (it == out.end()) {
      out[name] = std::move(v);
    } else if (it->value().is_array()) {
      it->value().as_array().push_back(std::move(v));
    } else {
      json::array a{it->value(), std::move(v)};
      it->value() = std::move(a);
    }
  }
  return out;
}

// The request target with the value of an `apikey` argument replaced.
std::string redact_target(std::string_view target) {
  size_t q = target.find('?');
  if (q == std::string_view::npos) return std::string(target);
  std::string out(target.substr(0, q + 1));
  std::string_view rest = target.substr(q + 1);
  bool first = true;
  while (true) {
    size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    if (!first) out += '&';
    first = false;
    size_t eq = pair.find('=');
    if (eq != std::string_view::npos && pair.substr(0, eq) == "apikey") {
      out.append(pair.substr(0, eq + 1));
      out += "[redacted]";
    } else {
      out.append(pair);
    }
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return out;
}

const std::string& hostname() {
  static const std::string name = [] {
    char buf[256] = {};
    return gethostname(buf, sizeof buf - 1) == 0 ? std::string(buf) : std::string();
  }();
  return name;
}

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

json::value var_value(const RequestCtx& ctx, std::string_view name) {
  auto v = ctx.var(name);
  if (!v) return nullptr;
  return json::value(*v);
}

}  // namespace

void capture_response_headers(RequestCtx& ctx) {
  if (ctx.resp_headers_captured) return;
  ctx.resp_headers_captured = true;
  auto removed = [&](std::string_view name) {
    for (const auto& r : ctx.resp_remove)
      if (lower(r) == lower(name)) return true;
    for (const auto& s : ctx.resp_set)
      if (lower(s.name) == lower(name)) return true;
    return false;
  };
  HeaderList& out = ctx.logged_resp_headers;
  if (ctx.upstream_resp) {
    for (const auto& h : ctx.upstream_resp->headers)
      if (!removed(h.name)) out.emplace_back(std::string(h.name), std::string(h.value));
  } else {
    for (const auto& h : ctx.resp_headers)
      if (!removed(h.name)) out.emplace_back(h.name, h.value);
  }
  for (const auto& h : ctx.resp_set) out.emplace_back(h.name, h.value);
  for (const auto& h : ctx.resp_add) out.emplace_back(h.name, h.value);
}

void header_filter(RequestCtx& ctx, const Options& o) {
  capture_response_headers(ctx);
  if (o.include_resp_body && (!o.resp_body_expr || o.resp_body_expr->eval(ctx)))
    ctx.resp_body_keep = std::max(ctx.resp_body_keep, o.max_resp_body_bytes);
}

namespace {

// The kept response body as log-util's collect_body logs it: decoded when
// the response is gzip or br (within the same bound), as sent otherwise.
std::string logged_response_body(const RequestCtx& ctx, size_t max) {
  std::string_view body = std::string_view(ctx.resp_body_seen).substr(0, max);
  for (const auto& [name, value] : ctx.logged_resp_headers) {
    if (lower(name) != "content-encoding") continue;
    if (!http::content_coding_supported(value)) {
      log::warn("unsupported compression encoding type: {}", log::json_escape(value));
      break;
    }
    std::string out;
    auto d = http::decode_content(value, body, max, out);
    // A body cut at the bound ends inside the stream: what it decoded to is kept.
    if (d.status == http::DecodeStatus::ok || d.status == http::DecodeStatus::limited ||
        d.status == http::DecodeStatus::incomplete)
      return out;
    log::warn("try decode compressed data err: {}", d.error);
    break;
  }
  return std::string(body);
}

}  // namespace

json::object build(const RequestCtx& ctx, const Options& o) {
  json::object log;
  if (o.log_format) {
    // As get_custom_format_log: "$name" is the variable (null when unset),
    // anything else is taken as it is.
    for (const auto& [k, v] : *o.log_format) {
      if (v.is_string() && !v.as_string().empty() && v.as_string()[0] == '$')
        log[k] = var_value(ctx, std::string_view(v.as_string()).substr(1));
      else
        log[k] = v;
    }
    return log;
  }
  const http::RequestHead* req = ctx.req;
  json::object request;
  if (req) {
    std::string uri = redact_target(req->target);
    request["url"] = ctx.scheme + "://" + ctx.host + ":" + std::to_string(ctx.server_port) + uri;
    request["uri"] = uri;
    request["method"] = std::string(req->method);
    std::vector<std::pair<std::string_view, std::string_view>> hs;
    for (const auto& h : req->headers) hs.emplace_back(h.name, h.value);
    request["headers"] = header_table(hs, true);
    json::object q = query_table(ctx.query());
    if (auto it = q.find("apikey"); it != q.end()) it->value() = "[redacted]";
    request["querystring"] = std::move(q);
  }
  request["size"] = ctx.request_length;
  if (o.include_req_body && (!o.req_body_expr || o.req_body_expr->eval(ctx)) && !ctx.req_body_seen.empty())
    request["body"] = std::string(ctx.req_body_seen.substr(0, o.max_req_body_bytes));
  log["request"] = std::move(request);
  json::object response;
  response["status"] = ctx.status;
  response["headers"] = header_table(ctx.logged_resp_headers, false);
  response["size"] = ctx.bytes_sent;
  if (o.include_resp_body && ctx.resp_body_keep && (!o.resp_body_expr || o.resp_body_expr->eval(ctx)))
    response["body"] = logged_response_body(ctx, o.max_resp_body_bytes);
  log["response"] = std::move(response);
  log["server"] = json::object{{"hostname", hostname()}, {"version", HOLDFAST_VERSION}};
  if (!ctx.balancer_ip.empty()) log["upstream"] = ctx.balancer_ip + ":" + std::to_string(ctx.balancer_port);
  if (ctx.route) {
    log["route_id"] = std::string(ctx.route_id);
    log["service_id"] = ctx.route->service_id;
  } else {
    log["service_id"] = ctx.host;  // as APISIX, when no route matched
  }
  if (ctx.consumer && ctx.consumer->conf) log["consumer"] = json::object{{"username", ctx.consumer->conf->username}};
  log["client_ip"] = ctx.remote_addr;
  const double latency = ms_since(ctx.start);
  const auto start_ms = std::chrono::duration<double, std::milli>(std::chrono::system_clock::now().time_since_epoch()).count() - latency;
  log["start_time"] = static_cast<int64_t>(start_ms);
  log["latency"] = latency;
  if (ctx.upstream_ms >= 0) {
    log["upstream_latency"] = ctx.upstream_ms;
    log["apisix_latency"] = std::max(0.0, latency - ctx.upstream_ms);
  } else {
    log["apisix_latency"] = latency;
  }
  return log;
}

}  // namespace holdfast::plugins::logentry

namespace holdfast::plugins::logentry {

void parse_logger_fields(model::Checker& c, const char* plugin, LoggerFields& out) {
  if (const json::object* f = c.object("log_format")) {
    out.log_format = *f;
    out.has_log_format = true;
  }
  out.opts.include_req_body = c.boolean("include_req_body").value_or(false);
  if (const json::array* e = c.array("include_req_body_expr", false, 1)) {
    auto x = router::Expr::compile(*e);
    if (!x) c.fail("failed to validate the 'include_req_body_expr' expression: " + x.error());
    else out.opts.req_body_expr = *x;
  }
  out.opts.include_resp_body = c.boolean("include_resp_body").value_or(false);
  if (const json::array* e = c.array("include_resp_body_expr", false, 1)) {
    auto x = router::Expr::compile(*e);
    if (!x) c.fail("failed to validate the 'include_resp_body_expr' expression: " + x.error());
    else out.opts.resp_body_expr = *x;
  }
}

Result<std::shared_ptr<const Metadata>> parse_format_metadata(const json::object& value, const char* plugin) {
  auto m = std::make_shared<FormatMetadata>();
  model::Checker c(value, plugin);
  if (const json::object* f = c.object("log_format")) m->log_format = *f;
  if (c.failed()) return Error{c.error()};
  return std::shared_ptr<const Metadata>(std::move(m));
}

std::string entry_for(const RequestCtx& ctx, const LoggerFields& f, const char* plugin, bool mark_no_route) {
  Options o = f.opts;
  if (f.has_log_format) {
    o.log_format = &f.log_format;
  } else if (const auto* m = MetadataTable::of<FormatMetadata>(ctx, plugin); m && !m->log_format.empty()) {
    o.log_format = &m->log_format;
  }
  json::object entry = build(ctx, o);
  if (mark_no_route && !entry.contains("route_id")) entry["route_id"] = "no-matched";
  return json::serialize(entry);
}

}  // namespace holdfast::plugins::logentry
