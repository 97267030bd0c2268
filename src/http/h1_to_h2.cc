#include "http/h1_to_h2.h"

#include <algorithm>

#include "http/head_writer.h"

namespace holdfast::http {
namespace {

bool connection_specific(std::string_view lower_name) {
  return lower_name == "connection" || lower_name == "keep-alive" || lower_name == "proxy-connection" ||
         lower_name == "transfer-encoding" || lower_name == "upgrade";
}

void lower_into(std::string& out, std::string_view s) {
  for (char c : s) out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c);
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

constexpr size_t kMaxResponseHead = 256 * 1024;  // the pipeline's own heads are far smaller

// Where "\r\n\r\n" ends in `in`, given that `matched` bytes of it ended the
// bytes before; npos when it does not (matched is updated).
size_t find_head_end(std::string_view in, int& matched) {
  static constexpr char kEnd[] = "\r\n\r\n";
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == kEnd[matched]) {
      if (++matched == 4) return i + 1;
    } else {
      matched = in[i] == '\r' ? 1 : 0;
    }
  }
  return std::string_view::npos;
}

}  // namespace

void H1ToH2::reset(std::string_view request_method) {
  state_ = State::head;
  method_.assign(request_method);
  buf_.clear();
  left_ = 0;
  digits_ = 0;
}

bool H1ToH2::on_head(Sink& sink) {
  ParseError err;
  if (parse_response(buf_, method_, resp_, err) != ParseStatus::complete) return false;
  if (resp_.status == 101) return false;  // no upgrade over HTTP/2
  if (resp_.status < 200) {  // 100 Continue and other interim heads are not forwarded
    buf_.clear();
    return true;
  }
  size_t total = 0;
  for (const auto& h : resp_.headers) total += h.name.size();
  lower_.clear();
  lower_.reserve(total);  // fields_ point into it: no reallocation below
  fields_.clear();
  for (const auto& h : resp_.headers) {
    const size_t at = lower_.size();
    lower_into(lower_, h.name);
    std::string_view name(lower_.data() + at, h.name.size());
    if (connection_specific(name)) continue;
    if (unsafe_value_byte(h.value) != std::string_view::npos) return false;
    fields_.push_back({name, h.value});
  }
  const bool has_body = resp_.body != BodyKind::none &&
                        !(resp_.body == BodyKind::length && resp_.content_length == 0);
  sink.head(resp_.status, fields_, has_body);
  if (!has_body) {
    state_ = State::done;
    sink.end();
  } else if (resp_.body == BodyKind::length) {
    state_ = State::length;
    left_ = resp_.content_length;
  } else if (resp_.body == BodyKind::chunked) {
    state_ = State::chunk_size;
    left_ = 0;
    digits_ = 0;
  } else {
    state_ = State::until_close;
  }
  return true;
}

bool H1ToH2::on_trailers(Sink& sink) {
  // buf_: "name: value\r\n"... "\r\n"
  fields_.clear();
  lower_.clear();
  lower_.reserve(buf_.size());
  std::string_view rest(buf_);
  while (!rest.empty()) {
    size_t eol = rest.find("\r\n");
    if (eol == std::string_view::npos) break;
    std::string_view line = rest.substr(0, eol);
    rest.remove_prefix(eol + 2);
    if (line.empty()) break;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    std::string_view name = line.substr(0, colon), value = line.substr(colon + 1);
    for (char c : name)
      if (!is_tchar(c)) return false;
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    if (unsafe_value_byte(value) != std::string_view::npos) return false;
    const size_t at = lower_.size();
    lower_into(lower_, name);
    std::string_view lname(lower_.data() + at, name.size());
    if (connection_specific(lname) || lname == "content-length" || lname == "host") continue;
    fields_.push_back({lname, value});
  }
  if (!fields_.empty()) sink.trailers(fields_);
  state_ = State::done;
  sink.end();
  return true;
}

bool H1ToH2::feed(std::string_view in, Sink& sink) {
  while (!in.empty()) {
    switch (state_) {
      case State::head:
      case State::trailer: {
        size_t end = find_head_end(in, digits_);
        std::string_view part = in.substr(0, end == std::string_view::npos ? in.size() : end);
        if (buf_.size() + part.size() > kMaxResponseHead) {
          state_ = State::error;
          return false;
        }
        buf_.append(part);
        in.remove_prefix(part.size());
        if (end == std::string_view::npos) break;
        digits_ = 0;
        bool ok = state_ == State::head ? on_head(sink) : on_trailers(sink);
        if (!ok) {
          state_ = State::error;
          return false;
        }
        break;
      }
      case State::length: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(left_, in.size()));
        sink.data(in.data(), n);
        in.remove_prefix(n);
        left_ -= n;
        if (left_ == 0) {
          state_ = State::done;
          sink.end();
        }
        break;
      }
      case State::until_close:
        sink.data(in.data(), in.size());
        in = {};
        break;
      case State::chunk_size: {
        char c = in.front();
        int d = hex_digit(c);
        if (d >= 0) {
          if (++digits_ > 15) {
            state_ = State::error;
            return false;
          }
          left_ = left_ * 16 + static_cast<uint64_t>(d);
        } else if (digits_ > 0 && (c == ';' || c == ' ' || c == '\t')) {
          state_ = State::chunk_ext;
        } else if (digits_ > 0 && c == '\r') {
          state_ = State::chunk_size_lf;
        } else {
          state_ = State::error;
          return false;
        }
        in.remove_prefix(1);
        break;
      }
      case State::chunk_ext: {
        size_t cr = in.find('\r');
        if (cr == std::string_view::npos) {
          in = {};
        } else {
          in.remove_prefix(cr + 1);
          state_ = State::chunk_size_lf;
        }
        break;
      }
      case State::chunk_size_lf:
        if (in.front() != '\n') {
          state_ = State::error;
          return false;
        }
        in.remove_prefix(1);
        digits_ = 0;
        if (left_ == 0) {
          state_ = State::trailer;
          buf_.clear();
          digits_ = 2;  // as if "\r\n" had been seen: an empty trailer section is one more "\r\n"
        } else {
          state_ = State::chunk_data;
        }
        break;
      case State::chunk_data: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(left_, in.size()));
        sink.data(in.data(), n);
        in.remove_prefix(n);
        left_ -= n;
        if (left_ == 0) state_ = State::chunk_data_cr;
        break;
      }
      case State::chunk_data_cr:
      case State::chunk_data_lf:
        if (in.front() != (state_ == State::chunk_data_cr ? '\r' : '\n')) {
          state_ = State::error;
          return false;
        }
        in.remove_prefix(1);
        state_ = state_ == State::chunk_data_cr ? State::chunk_data_lf : State::chunk_size;
        left_ = 0;
        digits_ = 0;
        break;
      case State::done:
      case State::error:
        state_ = State::error;
        return false;
    }
  }
  return true;
}

bool H1ToH2::finish(Sink& sink) {
  if (state_ == State::until_close) {
    state_ = State::done;
    sink.end();
  }
  return state_ == State::done;
}

}  // namespace holdfast::http
