// The HTTP/1.1 ↔ HTTP/2 conversion of an exchange with an HTTP/2 upstream
// (scheme grpc/grpcs), without the HTTP/2 library: the request bytes the
// pipeline writes become a header list, DATA payload and trailers; an
// HTTP/2 response becomes HTTP/1.1 bytes with a chunked body whose chunked
// trailers carry the HTTP/2 trailers (grpc-status). Pure, so that it can be
// unit-tested and fuzzed; proxy/upstream_h2.cc drives it with nghttp2.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "http/codec.h"

namespace holdfast::http {

struct H2Field {
  std::string_view name;  // lowercase
  std::string_view value;
};

class H1ToH2Request {
 public:
  // `scheme`: the :scheme sent ("http" or "https").
  explicit H1ToH2Request(std::string_view scheme) : scheme_(scheme) {}

  // Consumes request bytes; decoded body payload is appended to `payload`.
  // False once the bytes are not a request this can convert (error()).
  bool feed(std::string_view in, std::string& payload);

  bool head_done() const { return state_ != State::head && state_ != State::error; }
  // :method, :scheme, :authority, :path, then the fields (connection-specific
  // ones dropped, names lowercased) and `te: trailers`.
  const std::vector<H2Field>& fields() const { return fields_; }
  // A request field of the head (first match), empty when absent.
  std::string_view header(std::string_view name) const { return req_.header(name); }
  bool has_body() const { return req_.body != BodyKind::none && !(req_.body == BodyKind::length && req_.content_length == 0); }
  // The whole body has been fed.
  bool ended() const { return state_ == State::done; }
  // The chunked trailers, once ended().
  const std::vector<H2Field>& trailers() const { return trailer_fields_; }
  const char* error() const { return error_; }

  static constexpr size_t kMaxHead = 64 * 1024;
  static constexpr size_t kMaxTrailers = 16 * 1024;

 private:
  bool fail(const char* why) {
    state_ = State::error;
    error_ = why;
    return false;
  }
  bool parse_head();
  bool body(std::string_view in, std::string& payload);
  bool finish_trailers();

  enum class State : uint8_t { head, body, done, error };
  State state_ = State::head;
  std::string_view scheme_;
  std::string head_;   // the request head, then what the fields point into
  std::string names_;  // lowercased names (sized once: views stay valid)
  RequestHead req_;
  std::vector<H2Field> fields_;
  uint64_t left_ = 0;
  ChunkedValidator chunked_;
  std::string trailer_raw_;
  std::vector<H2Field> trailer_fields_;
  const char* error_ = "";
};

class H2ToH1Response {
 public:
  // Appends the HTTP/1.1 response to `out` as it is built.
  explicit H2ToH1Response(std::string& out) : out_(out) {}

  // A field of the response head (":status" among them) or of the trailers.
  void field(std::string_view name, std::string_view value);
  // The end of a HEADERS block. False: a response head without a valid
  // :status. An informational (1xx) head is dropped.
  bool end_headers(bool end_stream);
  void data(std::string_view d);
  // END_STREAM on DATA (trailers come through end_headers).
  void end();
  // The call outlived its deadline: ends the response with a gRPC status
  // (Trailers-Only when no head went out yet).
  void fail(int grpc_status, std::string_view message);

  bool head_done() const { return state_ != State::head; }
  bool done() const { return state_ == State::done; }

 private:
  void finish();
  enum class State : uint8_t { head, body, done };
  State state_ = State::head;
  std::string& out_;
  std::string head_;      // the head or trailer lines being collected
  int status_ = 0;
};

}  // namespace holdfast::http
