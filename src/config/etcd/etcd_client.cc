#include "config/etcd/etcd_client.h"

#include <fmt/format.h>

#include <boost/json.hpp>

#include "core/base64.h"
#include "core/log.h"

namespace holdfast::config {
namespace json = boost::json;
namespace asio = boost::asio;

std::string prefix_end(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    unsigned char last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // whole keyspace
}

namespace {

int64_t as_int(const json::object& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end()) return 0;
  if (it->value().is_string()) {
    try { return std::stoll(std::string(it->value().as_string())); } catch (...) { return 0; }
  }
  if (it->value().is_int64()) return it->value().as_int64();
  return 0;
}

std::string b64_field(const json::object& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end() || !it->value().is_string()) return {};
  return base64_decode(it->value().as_string()).value_or("");
}

KeyValue parse_kv(const json::object& o) {
  KeyValue kv;
  kv.key = b64_field(o, "key");
  kv.value = b64_field(o, "value");
  kv.create_revision = as_int(o, "create_revision");
  kv.mod_revision = as_int(o, "mod_revision");
  return kv;
}

int64_t header_revision(const json::object& o) {
  auto it = o.find("header");
  if (it == o.end() || !it->value().is_object()) return 0;
  return as_int(it->value().as_object(), "revision");
}

// Request bodies are built in plain functions: GCC 12 miscompiles (or
// rejects) initializer lists inside coroutine bodies.
std::string auth_body(const std::string& user, const std::string& password) {
  json::object o;
  o["name"] = user;
  o["password"] = password;
  return json::serialize(o);
}

std::string range_body(const std::string& key, const std::string& end) {
  json::object o;
  o["key"] = base64_encode(key);
  if (!end.empty()) o["range_end"] = base64_encode(end);
  return json::serialize(o);
}

std::string put_body(const std::string& key, const std::string& value) {
  json::object o;
  o["key"] = base64_encode(key);
  o["value"] = base64_encode(value);
  return json::serialize(o);
}

// A compare over a range holds when it holds for every key in the range
// (and, for MOD, trivially for an empty one: etcd compares a zero revision).
std::string txn_body(const std::string& key, const std::string& value, const std::string& cmp_key,
                     const std::string& cmp_range_end, const char* result, int64_t mod_revision) {
  json::object cmp;
  cmp["key"] = base64_encode(cmp_key);
  if (!cmp_range_end.empty()) cmp["range_end"] = base64_encode(cmp_range_end);
  cmp["target"] = "MOD";
  cmp["result"] = result;
  cmp["mod_revision"] = std::to_string(mod_revision);
  json::object req;
  req["key"] = base64_encode(key);
  req["value"] = base64_encode(value);
  json::object put;
  put["request_put"] = req;
  json::array compare, success;
  compare.push_back(cmp);
  success.push_back(put);
  json::object o;
  o["compare"] = compare;
  o["success"] = success;
  return json::serialize(o);
}

std::string watch_body(const std::string& prefix, int64_t start_revision) {
  json::object create;
  create["key"] = base64_encode(prefix);
  create["range_end"] = base64_encode(prefix_end(prefix));
  create["start_revision"] = std::to_string(start_revision);
  json::object o;
  o["create_request"] = create;
  return json::serialize(o);
}

// The "message" (or "error") of an etcd gateway error reply, else the start of the body.
std::string error_message(const std::string& body) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (!ec && v.is_object()) {
    const auto& o = v.as_object();
    for (const char* k : {"message", "error"})
      if (auto it = o.find(k); it != o.end() && it->value().is_string()) return std::string(it->value().as_string());
  }
  return body.substr(0, 200);
}

// A watch refused because the auth token expired or was lost (simple tokens
// live in etcd's memory with a TTL, and die with a restart). etcd 3.4 answers
// HTTP 200 and a created+canceled result with this reason.
bool token_rejected(const std::string& reason) { return reason.find("invalid auth token") != std::string::npos; }

http::Headers json_headers(const std::string& token) {
  http::Headers h;
  h.emplace_back("Content-Type", "application/json");
  if (!token.empty()) h.emplace_back("Authorization", token);
  return h;
}

}  // namespace

EtcdClient::EtcdClient(asio::any_io_executor ex, EtcdOptions opts) : ex_(std::move(ex)), opts_(std::move(opts)) {
  if (opts_.hosts.empty()) opts_.hosts.push_back("http://127.0.0.1:2379");
  clients_.resize(opts_.hosts.size());
}

EtcdClient::~EtcdClient() = default;

http::HttpClient& EtcdClient::client(size_t i) {
  if (!clients_[i]) {
    auto url = http::Url::parse(opts_.hosts[i]);
    clients_[i] = std::make_unique<http::HttpClient>(ex_, url ? *url : http::Url{}, opts_.tls);
  }
  return *clients_[i];
}

void EtcdClient::drop_idle() {
  for (auto& c : clients_)
    if (c) c->drop_idle();
}

void EtcdClient::cancel() {
  for (auto& c : clients_)
    if (c) c->cancel();
}

asio::awaitable<Status> EtcdClient::authenticate(http::HttpClient& c) {
  auto r = co_await c.request("POST", "/v3/auth/authenticate", json_headers(""), auth_body(opts_.user, opts_.password),
                              opts_.timeout);
  if (!r) co_return Error{r.error()};
  if (r->status != 200) {
    // etcd's message names the reason (e.g. "etcdserver: authentication
    // failed, invalid user ID or password"); the password is never logged.
    co_return Error{fmt::format("etcd authentication as {} failed: HTTP {}: {}", opts_.user, r->status,
                                error_message(r->body))};
  }
  boost::system::error_code ec;
  auto v = json::parse(r->body, ec);
  if (ec || !v.is_object() || !v.as_object().contains("token")) co_return Error{"etcd authentication: no token in reply"};
  token_ = std::string(v.as_object().at("token").as_string());
  co_return Status{};
}

// POSTs to the current host; on a transport error moves to the next host
// (each host once). An HTTP-level error from etcd is returned as is.
asio::awaitable<Result<json::value>> EtcdClient::call(const std::string& path, std::string body) {
  std::string last_error;
  for (size_t attempt = 0; attempt < opts_.hosts.size(); ++attempt) {
    size_t idx = (current_ + attempt) % opts_.hosts.size();
    if (!http::Url::parse(opts_.hosts[idx])) {
      last_error = fmt::format("invalid etcd host {}", opts_.hosts[idx]);
      continue;
    }
    http::HttpClient& c = client(idx);
    for (int auth_try = 0; auth_try < 2; ++auth_try) {
      if (!opts_.user.empty() && token_.empty()) {
        auto st = co_await authenticate(c);
        if (!st) { last_error = st.error(); break; }
      }
      auto r = co_await c.request("POST", path, json_headers(token_), body, opts_.timeout);
      if (!r) {
        last_error = fmt::format("{}: {}", opts_.hosts[idx], r.error());
        break;
      }
      if (r->status == 401 || (r->status != 200 && r->body.find("invalid auth token") != std::string::npos)) {
        token_.clear();  // expired token: authenticate again once
        last_error = fmt::format("{}: HTTP {}", opts_.hosts[idx], r->status);
        continue;
      }
      boost::system::error_code ec;
      auto v = json::parse(r->body, ec);
      if (ec || !v.is_object()) {
        last_error = fmt::format("{}: invalid reply (HTTP {})", opts_.hosts[idx], r->status);
        break;
      }
      if (r->status != 200) co_return Error{fmt::format("etcd {}: HTTP {}: {}", path, r->status, error_message(r->body))};
      current_ = idx;
      co_return v;
    }
  }
  co_return Error{last_error.empty() ? std::string("no etcd host reachable") : last_error};
}

asio::awaitable<Result<RangeResult>> EtcdClient::range(std::string key, std::string range_end) {
  auto v = co_await call("/v3/kv/range", range_body(key, range_end));
  if (!v) co_return Error{v.error()};
  RangeResult out;
  const auto& o = v->as_object();
  out.revision = header_revision(o);
  if (auto it = o.find("kvs"); it != o.end() && it->value().is_array())
    for (const auto& kv : it->value().as_array())
      if (kv.is_object()) out.kvs.push_back(parse_kv(kv.as_object()));
  co_return out;
}

asio::awaitable<Result<int64_t>> EtcdClient::put(std::string key, std::string value) {
  auto v = co_await call("/v3/kv/put", put_body(key, value));
  if (!v) co_return Error{v.error()};
  co_return header_revision(v->as_object());
}

asio::awaitable<Result<int64_t>> EtcdClient::del(std::string key, std::string range_end) {
  auto v = co_await call("/v3/kv/deleterange", range_body(key, range_end));
  if (!v) co_return Error{v.error()};
  co_return as_int(v->as_object(), "deleted");
}

asio::awaitable<Result<bool>> EtcdClient::put_if(std::string key, std::string value, int64_t mod_revision) {
  auto v = co_await call("/v3/kv/txn", txn_body(key, value, key, "", "EQUAL", mod_revision));
  if (!v) co_return Error{v.error()};
  auto it = v->as_object().find("succeeded");
  co_return it != v->as_object().end() && it->value().is_bool() && it->value().as_bool();
}

asio::awaitable<Result<bool>> EtcdClient::put_if_range_unchanged(std::string key, std::string value,
                                                                 std::string range_start, std::string range_end,
                                                                 int64_t revision) {
  auto v = co_await call("/v3/kv/txn", txn_body(key, value, range_start, range_end, "LESS", revision + 1));
  if (!v) co_return Error{v.error()};
  auto it = v->as_object().find("succeeded");
  co_return it != v->as_object().end() && it->value().is_bool() && it->value().as_bool();
}

asio::awaitable<Status> EtcdClient::watch(std::string prefix, int64_t start_revision,
                                          std::function<bool(const WatchResponse&)> on_response,
                                          double idle_timeout) {
  http::HttpClient& c = client(current_);
  // A watch can meet an expired token (it is only used when the stream is
  // created, so an open stream does not keep it alive): log in again and
  // re-create the stream once, at the same revision, instead of reporting a
  // canceled watch that would cost the caller a full reload.
  for (int auth_try = 0;; ++auth_try) {
    if (!opts_.user.empty() && token_.empty()) {
      auto st = co_await authenticate(c);
      if (!st) co_return st;
    }
    const bool may_renew = !opts_.user.empty() && auth_try == 0;
    bool renew = false;
    // The gateway streams one JSON object per message, newline-separated.
    std::string pending;
    bool stop = false;
    std::string parse_error;
    auto r = co_await c.stream("POST", "/v3/watch", json_headers(token_), watch_body(prefix, start_revision), opts_.timeout,
                               idle_timeout, [&](std::string_view data) {
      pending.append(data);
      // One message without its newline may not grow without end: the bound
      // is the largest body this client takes in one piece.
      if (pending.size() > http::HttpClient::kDefaultMaxBodyBytes && pending.find('\n') == std::string::npos) {
        parse_error = fmt::format("watch message over {} bytes", http::HttpClient::kDefaultMaxBodyBytes);
        return false;
      }
      size_t nl;
      while ((nl = pending.find('\n')) != std::string::npos) {
        std::string line = pending.substr(0, nl);
        pending.erase(0, nl + 1);
        if (line.empty() || line == "\r") continue;
        boost::system::error_code ec;
        auto v = json::parse(line, ec);
        if (ec || !v.is_object()) { parse_error = "invalid watch message"; return false; }
        auto& o = v.as_object();
        auto res = o.find("result");
        if (res == o.end() || !res->value().is_object()) {
          if (o.contains("error")) {
            if (may_renew && token_rejected(json::serialize(o.at("error")))) { renew = true; return false; }
            parse_error = "watch error: " + json::serialize(o.at("error"));
            return false;
          }
          continue;
        }
        const auto& ro = res->value().as_object();
        WatchResponse wr;
        wr.revision = header_revision(ro);
        wr.created = ro.contains("created") && ro.at("created").is_bool() && ro.at("created").as_bool();
        wr.canceled = ro.contains("canceled") && ro.at("canceled").is_bool() && ro.at("canceled").as_bool();
        wr.compact_revision = as_int(ro, "compact_revision");
        if (auto cr = ro.find("cancel_reason"); cr != ro.end() && cr->value().is_string())
          wr.cancel_reason = std::string(cr->value().as_string());
        if (wr.canceled && may_renew && token_rejected(wr.cancel_reason)) { renew = true; return false; }
        if (auto ev = ro.find("events"); ev != ro.end() && ev->value().is_array()) {
          for (const auto& e : ev->value().as_array()) {
            if (!e.is_object()) continue;
            const auto& eo = e.as_object();
            WatchEvent we;
            if (auto t = eo.find("type"); t != eo.end() && t->value().is_string()) we.is_delete = t->value().as_string() == "DELETE";
            if (auto kv = eo.find("kv"); kv != eo.end() && kv->value().is_object()) we.kv = parse_kv(kv->value().as_object());
            wr.events.push_back(std::move(we));
          }
        }
        if (!on_response(wr)) { stop = true; return false; }
      }
      return true;
    });
    // A gateway that refuses the request itself answers 401.
    if (!r && may_renew && (r.error().rfind("HTTP 401", 0) == 0 || token_rejected(r.error()))) renew = true;
    if (renew) {
      log::debug("etcd watch: auth token rejected, authenticating again");
      token_.clear();
      continue;
    }
    if (!parse_error.empty()) co_return Error{parse_error};
    if (!r) co_return Error{r.error()};
    if (stop) co_return Status{};
    co_return Error{"watch stream ended"};
  }
}

}  // namespace holdfast::config
