#include "http/h2_upstream_codec.h"

#include <algorithm>
#include <cctype>

namespace holdfast::http {

namespace {

// Fields that describe one HTTP/1.1 connection and may not appear in HTTP/2
// (RFC 9113 §8.2.2), and those carried as pseudo-headers.
bool dropped_field(std::string_view n) {
  static constexpr std::string_view kDrop[] = {"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                                               "upgrade",    "te",         "host",             "http2-settings",
                                               "trailer"};
  for (auto d : kDrop)
    if (iequals(n, d)) return true;
  return false;
}

bool dropped_trailer(std::string_view n) {
  return dropped_field(n) || iequals(n, "content-length") || (!n.empty() && n[0] == ':');
}

void lower_into(std::string& dst, std::string_view s) {
  for (char c : s) dst.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
}

void append_hex(std::string& out, size_t n) {
  char buf[20];
  int i = 20;
  do {
    buf[--i] = "0123456789abcdef"[n & 15];
    n >>= 4;
  } while (n);
  out.append(buf + i, 20 - i);
}

}  // namespace

bool H1ToH2Request::feed(std::string_view in, std::string& payload) {
  switch (state_) {
    case State::error: return false;
    case State::done: return in.empty() || fail("bytes after the request body");
    case State::body: return body(in, payload);
    case State::head: break;
  }
  const size_t had = head_.size();
  head_.append(in);
  Limits limits;
  limits.max_head_bytes = kMaxHead;
  limits.max_uri_bytes = kMaxHead;
  limits.max_headers = 1000;
  ParseError err;
  switch (parse_request(head_, limits, req_, err)) {
    case ParseStatus::incomplete:
      if (head_.size() > kMaxHead) return fail("request head too large");
      return true;
    case ParseStatus::error: return fail(err.reason);
    case ParseStatus::complete: break;
  }
  const size_t head_bytes = req_.head_bytes;
  if (!parse_head()) return false;
  state_ = State::body;
  left_ = req_.body == BodyKind::length ? req_.content_length : 0;
  if (req_.body == BodyKind::none || (req_.body == BodyKind::length && left_ == 0)) state_ = State::done;
  // Bytes after the head in this feed are body bytes.
  std::string_view rest = in.substr(std::min(in.size(), head_bytes - std::min(head_bytes, had)));
  if (state_ == State::done) return rest.empty() || fail("bytes after the request body");
  return body(rest, payload);
}

bool H1ToH2Request::parse_head() {
  if (req_.body == BodyKind::until_close) return fail("request body without framing");
  if (req_.target.empty() || (req_.target[0] != '/' && req_.target != "*")) return fail("request target not in origin form");
  if (req_.host.empty()) return fail("request without Host");
  size_t name_bytes = 0;
  for (const auto& h : req_.headers) name_bytes += h.name.size();
  names_.clear();
  names_.reserve(name_bytes);  // views into names_ must not move
  fields_.clear();
  fields_.reserve(req_.headers.size() + 5);
  fields_.push_back({":method", req_.method});
  fields_.push_back({":scheme", scheme_});
  fields_.push_back({":authority", req_.host});
  fields_.push_back({":path", req_.target});
  for (const auto& h : req_.headers) {
    if (dropped_field(h.name)) continue;
    const size_t at = names_.size();
    lower_into(names_, h.name);
    fields_.push_back({std::string_view(names_).substr(at, h.name.size()), h.value});
  }
  fields_.push_back({"te", "trailers"});
  return true;
}

bool H1ToH2Request::body(std::string_view in, std::string& payload) {
  if (req_.body == BodyKind::length) {
    if (in.size() > left_) return fail("bytes after the request body");
    payload.append(in);
    left_ -= in.size();
    if (left_ == 0) state_ = State::done;
    return true;
  }
  size_t used = 0;
  auto r = chunked_.feed(in, used, &payload, &trailer_raw_);
  if (r == ChunkedValidator::Result::error) return fail("invalid chunked body");
  if (trailer_raw_.size() > kMaxTrailers) return fail("request trailers too large");
  if (r == ChunkedValidator::Result::need_more) return true;
  if (used != in.size()) return fail("bytes after the request body");
  state_ = State::done;
  return finish_trailers();
}

// Trailer lines ("name: value\n") into fields; names lowercased in place
// (trailer_raw_ does not change size, so the views stay valid).
bool H1ToH2Request::finish_trailers() {
  trailer_fields_.clear();
  size_t pos = 0;
  while (pos < trailer_raw_.size()) {
    size_t eol = trailer_raw_.find('\n', pos);
    if (eol == std::string::npos) eol = trailer_raw_.size();
    const size_t colon = trailer_raw_.find(':', pos);
    if (colon == pos || colon == std::string::npos || colon > eol) return fail("malformed trailer field");
    for (size_t i = pos; i < colon; ++i) {
      if (!is_tchar(trailer_raw_[i])) return fail("malformed trailer field");
      trailer_raw_[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(trailer_raw_[i])));
    }
    std::string_view all(trailer_raw_);
    std::string_view name = all.substr(pos, colon - pos);
    std::string_view value = all.substr(colon + 1, eol - colon - 1);
    pos = eol + 1;
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    for (char c : value) {
      auto u = static_cast<unsigned char>(c);
      if ((u < 0x20 && c != '\t') || u == 0x7f) return fail("control character in a trailer");
    }
    if (dropped_trailer(name)) continue;
    trailer_fields_.push_back({name, value});
  }
  return true;
}

void H2ToH1Response::field(std::string_view name, std::string_view value) {
  if (state_ == State::done) return;
  if (state_ == State::head && name == ":status") {
    status_ = 0;
    if (value.size() == 3 && std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; }))
      status_ = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
    return;
  }
  if (!name.empty() && name[0] == ':') return;
  if (state_ == State::head && (iequals(name, "content-length") || dropped_field(name))) return;
  if (state_ == State::body && dropped_trailer(name)) return;
  head_.append(name);
  head_.append(": ");
  head_.append(value);
  head_.append("\r\n");
}

bool H2ToH1Response::end_headers(bool end_stream) {
  if (state_ == State::done) return true;
  if (state_ == State::body) {  // trailers
    finish();
    return true;
  }
  if (status_ < 100 || status_ > 999) return false;
  if (status_ < 200) {  // informational: the final head follows
    head_.clear();
    status_ = 0;
    return true;
  }
  out_.append("HTTP/1.1 ");
  out_.append(std::to_string(status_));
  out_.append(status_ == 200 ? " OK\r\n" : " \r\n");
  out_.append(head_);
  head_.clear();
  if (end_stream) {
    // Trailers-Only (a gRPC error) or an empty response.
    out_.append("content-length: 0\r\n\r\n");
    state_ = State::done;
  } else {
    out_.append("transfer-encoding: chunked\r\n\r\n");
    state_ = State::body;
  }
  return true;
}

void H2ToH1Response::data(std::string_view d) {
  if (state_ != State::body || d.empty()) return;
  append_hex(out_, d.size());
  out_.append("\r\n");
  out_.append(d);
  out_.append("\r\n");
}

void H2ToH1Response::end() {
  if (state_ == State::body) finish();
}

void H2ToH1Response::finish() {
  out_.append("0\r\n");
  out_.append(head_);
  out_.append("\r\n");
  head_.clear();
  state_ = State::done;
}

void H2ToH1Response::fail(int grpc_status, std::string_view message) {
  if (state_ == State::done) return;
  std::string fields = "grpc-status: " + std::to_string(grpc_status) + "\r\ngrpc-message: ";
  fields.append(message);
  fields.append("\r\n");
  if (state_ == State::head) {
    out_.append("HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\n");
    out_.append(fields);
    out_.append("content-length: 0\r\n\r\n");
  } else {
    // Any trailers already collected are replaced: the status is ours.
    out_.append("0\r\n");
    out_.append(fields);
    out_.append("\r\n");
  }
  head_.clear();
  state_ = State::done;
}

}  // namespace holdfast::http
