#include "http/grpc.h"

#include <limits>

#include "http/codec.h"

namespace holdfast::http {

bool is_grpc_content_type(std::string_view ct) {
  constexpr std::string_view kGrpc = "application/grpc";
  if (ct.size() < kGrpc.size() || !iequals(ct.substr(0, kGrpc.size()), kGrpc)) return false;
  if (ct.size() == kGrpc.size()) return true;
  const char c = ct[kGrpc.size()];
  return c == '+' || c == ';';
}

std::optional<int64_t> parse_grpc_timeout(std::string_view v) {
  if (v.size() < 2 || v.size() > 9) return std::nullopt;
  int64_t n = 0;
  for (char c : v.substr(0, v.size() - 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  // Up to 8 digits: no product below overflows int64.
  switch (v.back()) {
    case 'H': return n * 3'600'000;
    case 'M': return n * 60'000;
    case 'S': return n * 1000;
    case 'm': return n;
    case 'u': return (n + 999) / 1000;
    case 'n': return (n + 999'999) / 1'000'000;
    default: return std::nullopt;
  }
}

int grpc_status_for_http(int s, bool deadline) {
  switch (s) {
    case 401: return kGrpcUnauthenticated;
    case 403: return kGrpcPermissionDenied;
    case 404: return kGrpcUnimplemented;
    case 504: return deadline ? kGrpcDeadlineExceeded : kGrpcUnavailable;
    case 429:
    case 502:
    case 503: return kGrpcUnavailable;
    default: return kGrpcUnknown;
  }
}

std::string grpc_message_encode(std::string_view msg) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(msg.size());
  for (char ch : msg) {
    auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c <= 0x7e && c != '%') {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

}  // namespace holdfast::http
