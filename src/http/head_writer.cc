#include "http/head_writer.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>

#include "http/codec.h"
#include "http/uri.h"

namespace holdfast::http {
namespace {

// lua-nginx-module's NGX_HTTP_LUA_ESCAPE_HEADER_VALUE and _NAME sets.
constexpr ByteSet kHeaderValue = {0xfffffdff, 0, 0, 0x80000000, 0, 0, 0, 0};
constexpr ByteSet kHeaderName = {0xffffffff, 0xfc009305, 0x38000001, 0xa8000000,
                                 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff};

constexpr uint64_t kOnes = 0x0101010101010101ULL;
constexpr uint64_t kHigh = 0x8080808080808080ULL;

// Eight bytes at a time, because every head of every request passes here:
// true when the word may hold a byte below `limit` or a DEL (exact as a
// yes/no, the bit tricks of "Bit Twiddling Hacks", hasless and haszero).
inline bool word_suspect(uint64_t x, uint64_t below) {
  const uint64_t del = x ^ (kOnes * 0x7f);
  return (((x - below) & ~x) | ((del - kOnes) & ~del)) & kHigh;
}

size_t find_unsafe(std::string_view s, unsigned char limit, bool allow_tab) {
  const uint64_t below = kOnes * limit;
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t x;
    std::memcpy(&x, s.data() + i, 8);
    if (word_suspect(x, below)) break;
  }
  for (; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if ((c < limit && !(allow_tab && c == '\t')) || c == 0x7f) return i;
  }
  return std::string_view::npos;
}

size_t unsafe_name_byte(std::string_view name) {
  for (size_t i = 0; i < name.size(); ++i)
    if (!is_tchar(name[i])) return i;
  return std::string_view::npos;
}

}  // namespace

std::string escape_header_value(std::string value) { return percent_escape(std::move(value), kHeaderValue); }
std::string escape_header_name(std::string name) { return percent_escape(std::move(name), kHeaderName); }

size_t unsafe_value_byte(std::string_view value) { return find_unsafe(value, 0x20, true); }
size_t unsafe_target_byte(std::string_view target) { return find_unsafe(target, 0x21, false); }

void HeadWriter::request_line(std::string_view method, std::string_view target, bool http10, const char* method_by,
                              const char* target_by) {
  if (size_t at = unsafe_name_byte(method); at != std::string_view::npos || method.empty())
    return refuse("request method", {}, method_by, method, at);
  if (size_t at = unsafe_target_byte(target); at != std::string_view::npos || target.empty())
    return refuse("request target", {}, target_by, target, at);
  out_.append(method);
  out_ += ' ';
  out_.append(target);
  out_.append(http10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
}

void HeadWriter::status_line(int status, std::string_view reason) {
  if (size_t at = unsafe_value_byte(reason); at != std::string_view::npos)
    return refuse("status reason", {}, nullptr, reason, at);
  fmt::format_to(std::back_inserter(out_), "HTTP/1.1 {} {}\r\n", status, reason);
}

void HeadWriter::header(std::string_view name, std::string_view value, const char* by) {
  if (size_t at = unsafe_name_byte(name); at != std::string_view::npos || name.empty())
    return refuse("header name", name, by, name, at);
  if (size_t at = unsafe_value_byte(value); at != std::string_view::npos)
    return refuse("header", name, by, value, at);
  out_.append(name);
  out_.append(": ");
  out_.append(value);
  out_.append("\r\n");
}

void HeadWriter::refuse(const char* what, std::string_view name, const char* by, std::string_view field, size_t at) {
  if (fault_what_) return;  // the first one is reported
  fault_what_ = what;
  // A refused name is itself suspect: keep only its safe prefix.
  fault_name_.assign(name.substr(0, std::min(name.size(), unsafe_name_byte(name))));
  fault_by_ = by;
  fault_at_ = at;
  fault_byte_ = at < field.size() ? static_cast<unsigned char>(field[at]) : 0;
}

std::string HeadWriter::fault() const {
  if (!fault_what_) return {};
  std::string where = fault_name_.empty() ? std::string(fault_what_) : fmt::format("{} \"{}\"", fault_what_, fault_name_);
  std::string who = fault_by_ ? fmt::format("set by {}", fault_by_) : fmt::format("from {}", source_);
  if (fault_at_ == std::string_view::npos) return fmt::format("{} ({}): empty", where, who);
  return fmt::format("{} ({}): byte 0x{:02x} at offset {}", where, who, fault_byte_, fault_at_);
}

}  // namespace holdfast::http
