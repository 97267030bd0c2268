// The HTTP/1.1 response the request pipeline writes, turned into the parts
// of an HTTP/2 response (transport/h2_server.h). No I/O here, so that it can
// be fuzzed and tested alone.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "http/codec.h"

namespace holdfast::http {

// Turns an HTTP/1.1 response, as the pipeline writes it (status line,
// fields, then a Content-Length, chunked or close-delimited body), into the
// parts of an HTTP/2 response. Connection-specific fields are dropped and
// names lowercased; 1xx interim heads are skipped. Incremental: feed() takes
// the bytes of each write as they come.
class H1ToH2 {
 public:
  struct Sink {
    // `fields` hold lowercase names; `status` is the final status.
    virtual void head(int status, const std::vector<Header>& fields, bool has_body) = 0;
    virtual void data(const char* p, size_t n) = 0;
    virtual void trailers(const std::vector<Header>& fields) = 0;
    virtual void end() = 0;  // the response is complete
   protected:
    ~Sink() = default;
  };

  void reset(std::string_view request_method);
  // False: the bytes are not a valid HTTP/1.1 response (the stream is reset).
  bool feed(std::string_view in, Sink& sink);
  // The writer has no more bytes. False when the response was incomplete
  // (a close-delimited body is complete at this point).
  bool finish(Sink& sink);
  bool done() const { return state_ == State::done; }

 private:
  enum class State : uint8_t { head, length, chunk_size, chunk_ext, chunk_size_lf, chunk_data, chunk_data_cr,
                               chunk_data_lf, trailer, until_close, done, error };
  bool on_head(Sink& sink);
  bool on_trailers(Sink& sink);
  State state_ = State::head;
  std::string method_;
  std::string buf_;  // the head, then the trailer section, as it arrives
  ResponseHead resp_;
  std::vector<Header> fields_;
  std::string lower_;  // lowercased names of fields_
  uint64_t left_ = 0;
  int digits_ = 0;
};

}  // namespace holdfast::http
