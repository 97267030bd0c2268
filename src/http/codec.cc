#include "http/codec.h"

#include <array>
#include <cstring>

#include "http/head_writer.h"

namespace holdfast::http {
namespace {

inline char lower(char c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

std::string_view trim_ows(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

// Finds the end of one line starting at `pos`. Accepts CRLF and bare LF (as
// nginx does) but rejects a bare CR. Returns npos when no full line yet.
// `next` is set to the first byte after the line terminator.
constexpr size_t npos = std::string_view::npos;
size_t find_line(std::string_view buf, size_t pos, size_t& next, bool& bad) {
  const void* p = std::memchr(buf.data() + pos, '\n', buf.size() - pos);
  if (!p) return npos;
  size_t lf = static_cast<const char*>(p) - buf.data();
  next = lf + 1;
  size_t end = (lf > pos && buf[lf - 1] == '\r') ? lf - 1 : lf;
  // A CR anywhere else inside the line is a framing ambiguity.
  if (std::memchr(buf.data() + pos, '\r', end - pos) != nullptr) bad = true;
  return end;
}

bool parse_u64(std::string_view s, uint64_t& out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

// Parses header lines from `pos` until the empty line. Shared by requests and
// responses. Returns incomplete/complete/error and sets `end`.
ParseStatus parse_headers(std::string_view buf, size_t pos, size_t max_headers,
                          std::vector<Header>& headers, size_t& end, ParseError& err) {
  for (;;) {
    size_t next = 0;
    bool bad = false;
    size_t eol = find_line(buf, pos, next, bad);
    if (eol == npos) return ParseStatus::incomplete;
    if (bad) { err = {400, "bare CR in header"}; return ParseStatus::error; }
    if (eol == pos) { end = next; return ParseStatus::complete; }
    std::string_view line = buf.substr(pos, eol - pos);
    if (line[0] == ' ' || line[0] == '\t') { err = {400, "obsolete line folding"}; return ParseStatus::error; }
    size_t colon = 0;
    while (colon < line.size() && is_tchar(line[colon])) ++colon;
    if (colon == 0 || colon >= line.size() || line[colon] != ':') {
      err = {400, "invalid header name"};
      return ParseStatus::error;
    }
    std::string_view value = trim_ows(line.substr(colon + 1));
    // Nothing Holdfast writes may carry a control character, and header
    // values are forwarded as they are: refuse them here (HTAB is allowed).
    if (unsafe_value_byte(value) != npos) { err = {400, "control character in header value"}; return ParseStatus::error; }
    if (headers.size() >= max_headers) { err = {431, "too many headers"}; return ParseStatus::error; }
    headers.push_back({line.substr(0, colon), value});
    pos = next;
  }
}

// Content-Length / Transfer-Encoding rules shared by both directions
// (RFC 9112 §6). Any ambiguity is an error, never a guess.
bool framing(const std::vector<Header>& headers, BodyKind& body, uint64_t& length,
             ParseError& err, bool& connection_close, bool& connection_keepalive, bool& upgrade) {
  bool have_cl = false, have_te = false;
  for (const auto& h : headers) {
    if (iequals(h.name, "content-length")) {
      if (have_cl) { err = {400, "duplicate Content-Length"}; return false; }
      if (!parse_u64(h.value, length)) { err = {400, "invalid Content-Length"}; return false; }
      have_cl = true;
    } else if (iequals(h.name, "transfer-encoding")) {
      if (have_te || !iequals(h.value, "chunked")) {
        err = {400, "unsupported Transfer-Encoding"};
        return false;
      }
      have_te = true;
    } else if (iequals(h.name, "connection")) {
      if (header_has_token(h.value, "close")) connection_close = true;
      if (header_has_token(h.value, "keep-alive")) connection_keepalive = true;
      if (header_has_token(h.value, "upgrade")) upgrade = true;
    }
  }
  if (have_cl && have_te) { err = {400, "both Content-Length and Transfer-Encoding"}; return false; }
  body = have_te ? BodyKind::chunked : have_cl ? BodyKind::length : BodyKind::none;
  return true;
}

bool parse_version(std::string_view v, int& minor) {
  if (v.size() != 8 || v.substr(0, 7) != "HTTP/1.") return false;
  if (v[7] != '0' && v[7] != '1') return false;
  minor = v[7] - '0';
  return true;
}

// nginx's ngx_http_validate_host: no path separator, control character,
// space or NUL, no ".." (a dot directly after a dot), not empty once a
// trailing dot and the port are removed. In an absolute-form target the
// authority must also carry no userinfo ("user:pass@") and no "?" or "#".
bool valid_host(std::string_view h, bool authority) {
  enum { usual, dot, literal, rest } state = usual;
  size_t len = h.size();
  size_t dot_pos = npos;
  for (size_t i = 0; i < h.size(); ++i) {
    const auto c = static_cast<unsigned char>(h[i]);
    switch (c) {
      case '.':
        if (state == dot) return false;
        state = dot;
        dot_pos = i;
        break;
      case ':':
        if (state == usual) { len = i; state = rest; }
        break;
      case '[':
        if (i == 0) state = literal;
        break;
      case ']':
        if (state == literal) { len = i + 1; state = rest; }
        break;
      default:
        if (c == '/' || c == '\\' || c <= 0x20 || c == 0x7f) return false;
        if (authority && (c == '@' || c == '?' || c == '#')) return false;
        if (state == dot) state = usual;
        break;
    }
  }
  if (dot_pos != npos && dot_pos + 1 == len) --len;
  return len > 0;
}

}  // namespace

std::string_view host_header_port(std::string_view h) {
  size_t colon;
  if (!h.empty() && h[0] == '[') {
    const size_t close = h.find(']');
    if (close == std::string_view::npos || close + 1 >= h.size() || h[close + 1] != ':') return {};
    colon = close + 1;
  } else {
    colon = h.find(':');
    if (colon == std::string_view::npos) return {};
  }
  std::string_view p = h.substr(colon + 1);
  if (p.empty() || p.size() > 5) return {};
  for (char c : p)
    if (c < '0' || c > '9') return {};
  return p;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

bool header_has_token(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    size_t comma = value.find(',');
    std::string_view item = trim_ows(value.substr(0, comma));
    if (iequals(item, token)) return true;
    if (comma == npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

void RequestHead::clear() {
  method = target = path = query = host = {};
  minor = 1;
  headers.clear();
  body = BodyKind::none;
  content_length = 0;
  keep_alive = true;
  upgrade_websocket = expect_continue = false;
  head_bytes = 0;
}

std::string_view RequestHead::header(std::string_view name) const {
  for (const auto& h : headers)
    if (iequals(h.name, name)) return h.value;
  return {};
}

void ResponseHead::clear() {
  status = 0;
  minor = 1;
  reason = {};
  headers.clear();
  body = BodyKind::none;
  content_length = 0;
  keep_alive = true;
  head_bytes = 0;
}

std::string_view ResponseHead::header(std::string_view name) const {
  for (const auto& h : headers)
    if (iequals(h.name, name)) return h.value;
  return {};
}

ParseStatus parse_request(std::string_view buf, const Limits& limits, RequestHead& out,
                          ParseError& err) {
  out.clear();
  // Tolerate empty lines before a request line (RFC 9112 §2.2).
  size_t pos = 0;
  while (pos < buf.size() && (buf[pos] == '\r' || buf[pos] == '\n')) ++pos;
  size_t next = 0;
  bool bad = false;
  size_t eol = find_line(buf, pos, next, bad);
  if (eol == npos) {
    if (buf.size() - pos > limits.max_uri_bytes + 32) { err = {414, "request line too long"}; return ParseStatus::error; }
    if (buf.size() > limits.max_head_bytes) { err = {431, "request head too large"}; return ParseStatus::error; }
    return ParseStatus::incomplete;
  }
  if (bad) { err = {400, "bare CR in request line"}; return ParseStatus::error; }
  std::string_view line = buf.substr(pos, eol - pos);
  size_t sp1 = line.find(' ');
  size_t sp2 = line.rfind(' ');
  if (sp1 == npos || sp1 == 0 || sp2 == sp1) { err = {400, "malformed request line"}; return ParseStatus::error; }
  out.method = line.substr(0, sp1);
  for (char c : out.method)
    if (!is_tchar(c)) { err = {400, "invalid method"}; return ParseStatus::error; }
  out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (out.target.size() > limits.max_uri_bytes) { err = {414, "URI too long"}; return ParseStatus::error; }
  if (out.target.empty()) { err = {400, "empty target"}; return ParseStatus::error; }
  for (char c : out.target) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) { err = {400, "invalid character in target"}; return ParseStatus::error; }
  }
  if (!parse_version(line.substr(sp2 + 1), out.minor)) { err = {400, "unsupported HTTP version"}; return ParseStatus::error; }

  std::string_view t = out.target;
  std::string_view absolute_authority;
  if (t[0] != '/') {
    // absolute-form: keep only path?query; the authority replaces Host below.
    size_t scheme_end = t.find("://");
    if (scheme_end == npos) {
      if (out.method == "OPTIONS" && t == "*") { out.path = t; }
      else { err = {400, "invalid target"}; return ParseStatus::error; }
    } else {
      // absolute-form: the authority is the host (RFC 9112 §3.2.2), not the Host header.
      size_t slash = t.find('/', scheme_end + 3);
      absolute_authority = t.substr(scheme_end + 3, (slash == npos ? t.size() : slash) - scheme_end - 3);
      if (!valid_host(absolute_authority, true)) { err = {400, "invalid authority in target"}; return ParseStatus::error; }
      t = slash == npos ? std::string_view("/") : t.substr(slash);
    }
  }
  if (out.path.empty()) {
    size_t q = t.find('?');
    out.path = t.substr(0, q);
    if (q != npos) out.query = t.substr(q + 1);
    size_t hash = out.path.find('#');
    if (hash != npos) out.path = out.path.substr(0, hash);
  }

  size_t end = 0;
  auto st = parse_headers(buf, next, limits.max_headers, out.headers, end, err);
  if (st == ParseStatus::incomplete) {
    if (buf.size() > limits.max_head_bytes) { err = {431, "request head too large"}; return ParseStatus::error; }
    return st;
  }
  if (st == ParseStatus::error) return st;
  if (end > limits.max_head_bytes) { err = {431, "request head too large"}; return ParseStatus::error; }
  out.head_bytes = end;

  bool conn_close = false, conn_keep = false, upgrade = false, have_host = false;
  if (!framing(out.headers, out.body, out.content_length, err, conn_close, conn_keep, upgrade))
    return ParseStatus::error;
  if (out.body == BodyKind::chunked && out.minor == 0) { err = {400, "chunked in HTTP/1.0"}; return ParseStatus::error; }
  for (const auto& h : out.headers) {
    if (iequals(h.name, "host")) {
      if (have_host) { err = {400, "duplicate Host"}; return ParseStatus::error; }
      have_host = true;
      out.host = h.value;
      if (!valid_host(out.host, false)) { err = {400, "invalid Host"}; return ParseStatus::error; }
    } else if (iequals(h.name, "upgrade")) {
      if (upgrade && header_has_token(h.value, "websocket")) out.upgrade_websocket = true;
    } else if (iequals(h.name, "expect")) {
      if (iequals(h.value, "100-continue")) out.expect_continue = true;
    }
  }
  if (!have_host && out.minor == 1) { err = {400, "missing Host"}; return ParseStatus::error; }
  if (!absolute_authority.empty()) out.host = absolute_authority;
  out.keep_alive = out.minor == 1 ? !conn_close : (conn_keep && !conn_close);
  if (limits.max_body_bytes && out.body == BodyKind::length &&
      out.content_length > limits.max_body_bytes) {
    err = {413, "request body too large"};
    return ParseStatus::error;
  }
  return ParseStatus::complete;
}

ParseStatus parse_response(std::string_view buf, std::string_view request_method,
                           ResponseHead& out, ParseError& err) {
  out.clear();
  size_t next = 0;
  bool bad = false;
  size_t eol = find_line(buf, 0, next, bad);
  if (eol == npos) return ParseStatus::incomplete;
  if (bad) { err = {502, "bare CR in status line"}; return ParseStatus::error; }
  std::string_view line = buf.substr(0, eol);
  if (line.size() < 12 || !parse_version(line.substr(0, 8), out.minor) || line[8] != ' ') {
    err = {502, "malformed status line"};
    return ParseStatus::error;
  }
  std::string_view code = line.substr(9, 3);
  if (code[0] < '1' || code[0] > '5' || code[1] < '0' || code[1] > '9' || code[2] < '0' || code[2] > '9') {
    err = {502, "invalid status code"};
    return ParseStatus::error;
  }
  out.status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
  out.reason = line.size() > 13 ? line.substr(13) : std::string_view{};
  if (unsafe_value_byte(out.reason) != npos) { err = {502, "control character in reason phrase"}; return ParseStatus::error; }
  size_t end = 0;
  auto st = parse_headers(buf, next, 200, out.headers, end, err);
  if (st != ParseStatus::complete) {
    if (st == ParseStatus::error) err.status = 502;
    return st;
  }
  out.head_bytes = end;
  bool conn_close = false, conn_keep = false, upgrade = false;
  if (!framing(out.headers, out.body, out.content_length, err, conn_close, conn_keep, upgrade)) {
    err.status = 502;
    return ParseStatus::error;
  }
  out.keep_alive = out.minor == 1 ? !conn_close : (conn_keep && !conn_close);
  if (request_method == "HEAD" || out.status < 200 || out.status == 204 || out.status == 304) {
    out.body = BodyKind::none;
  } else if (out.body == BodyKind::none) {
    bool has_cl = !out.header("content-length").empty();
    if (!has_cl) {
      out.body = BodyKind::until_close;
      out.keep_alive = false;
    }
  }
  return ParseStatus::complete;
}

bool decode_chunked(std::string_view raw, std::string& out) {
  // The validator is the one chunked parser: its size is bounded (15 hex
  // digits), so a size near 2^64 can neither wrap nor make this loop, even
  // when `raw` was never validated.
  ChunkedValidator v;
  size_t used = 0;
  return v.feed(raw, used, &out) == ChunkedValidator::Result::done;
}

ChunkedValidator::Result ChunkedValidator::feed(std::string_view data, size_t& used, std::string* payload,
                                                std::string* trailers) {
  size_t i = 0;
  const size_t n = data.size();
  auto fail = [&] { used = i; return Result::error; };
  while (i < n) {
    char c = data[i];
    switch (state_) {
      case State::size: {
        int v = -1;
        if (c >= '0' && c <= '9') v = c - '0';
        else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
        if (v >= 0) {
          if (++size_digits_ > 15) return fail();  // > 2^60: nonsense, refuse
          chunk_left_ = chunk_left_ * 16 + v;
          ++i;
        } else if (size_digits_ == 0) {
          return fail();
        } else if (c == ';') {
          state_ = State::size_ext; line_len_ = 0; ++i;
        } else if (c == '\r') {
          state_ = State::size_lf; ++i;
        } else {
          return fail();  // includes spaces and bare LF: ambiguous between parsers
        }
        break;
      }
      case State::size_ext:
        if (c == '\r') { state_ = State::size_lf; ++i; }
        else if (c == '\n' || ++line_len_ > 4096) return fail();
        else ++i;
        break;
      case State::size_lf:
        if (c != '\n') return fail();
        ++i;
        size_digits_ = 0;
        if (chunk_left_ == 0) { state_ = State::trailer_start; }
        else { state_ = State::data; }
        break;
      case State::data: {
        uint64_t take = std::min<uint64_t>(chunk_left_, n - i);
        if (payload) payload->append(data.substr(i, take));
        i += take;
        chunk_left_ -= take;
        payload_ += take;
        if (chunk_left_ == 0) state_ = State::data_cr;
        break;
      }
      case State::data_cr:
        if (c != '\r') return fail();
        state_ = State::data_lf; ++i;
        break;
      case State::data_lf:
        if (c != '\n') return fail();
        state_ = State::size; ++i;
        break;
      case State::trailer_start:
        if (c == '\r') { state_ = State::final_lf; ++i; }
        else if (c == '\n' || c == ' ' || c == '\t') return fail();
        else {
          if (trailers) trailers->push_back(c);
          state_ = State::trailer_line; line_len_ = 0; ++i;
        }
        break;
      case State::trailer_line:
        if (c == '\r') { state_ = State::trailer_lf; ++i; }
        else if (c == '\n' || ++line_len_ > 8192) return fail();
        else {
          if (trailers) trailers->push_back(c);
          ++i;
        }
        break;
      case State::trailer_lf:
        if (c != '\n') return fail();
        if (trailers) trailers->push_back('\n');
        state_ = State::trailer_start; ++i;
        break;
      case State::final_lf:
        if (c != '\n') return fail();
        ++i;
        state_ = State::done;
        used = i;
        return Result::done;
      case State::done:
        used = i;
        return Result::done;
    }
  }
  used = i;
  return state_ == State::done ? Result::done : Result::need_more;
}

}  // namespace holdfast::http
