// Serialising HTTP/1 heads so that nothing Holdfast writes carries a control
// character: the escapes OpenResty applies to header names and values a
// plugin sets, and the writer that checks every request line, status line
// and header field once, as it appends it. The writer is the backstop behind
// the encoders: a field that would still carry a control character is not
// written, and the caller answers 500 instead of sending the head.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace holdfast::http {

// OpenResty's escapes for what ngx.header and ngx.req.set_header receive
// (lua-nginx-module's ngx_http_lua_copy_escaped_header). A value gets
// 0x00-0x08, 0x0A-0x1F and 0x7F percent-encoded (HTAB stays); a name gets
// every byte that is not a token character encoded, so it comes out a token.
// Clean input comes back as it is, without a copy.
std::string escape_header_value(std::string value);
std::string escape_header_name(std::string name);

// Position of the first byte that may not be written (npos: none). A field
// value takes anything but a control character (HTAB is allowed); a request
// target takes no control character and no space.
size_t unsafe_value_byte(std::string_view value);
size_t unsafe_target_byte(std::string_view target);

class HeadWriter {
 public:
  // `source` names who supplied the fields appended without a `by` of their
  // own (e.g. "the client's request"), for the log line.
  HeadWriter(std::string& out, const char* source) : out_(out), source_(source) {}

  void request_line(std::string_view method, std::string_view target, bool http10,
                    const char* method_by = nullptr, const char* target_by = nullptr);
  void status_line(int status, std::string_view reason);
  // `by`: who set this field (a plugin's name), when not `source`.
  void header(std::string_view name, std::string_view value, const char* by = nullptr);
  void end() { out_ += "\r\n"; }

  bool ok() const { return fault_what_ == nullptr; }
  // The first refused field, where it came from and the offending byte, e.g.
  // `request header "X-Path" (set by proxy-rewrite): byte 0x0d at offset 2`.
  // Never the value itself: it may be a credential.
  std::string fault() const;

 private:
  void refuse(const char* what, std::string_view name, const char* by, std::string_view field, size_t at);

  std::string& out_;
  const char* source_;
  const char* fault_what_ = nullptr;
  std::string fault_name_;
  const char* fault_by_ = nullptr;
  unsigned char fault_byte_ = 0;
  size_t fault_at_ = 0;
};

}  // namespace holdfast::http
