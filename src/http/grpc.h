// gRPC over HTTP: the pieces the request pipeline needs without speaking
// HTTP/2 itself (the grpc-timeout header, the status Holdfast answers with
// for an error it generates, grpc-message's encoding).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace holdfast::http {

// gRPC status codes used here (grpc/doc/statuscodes.md).
enum GrpcStatus : int {
  kGrpcUnknown = 2,
  kGrpcDeadlineExceeded = 4,
  kGrpcPermissionDenied = 7,
  kGrpcUnimplemented = 12,
  kGrpcUnavailable = 14,
  kGrpcUnauthenticated = 16,
};

// A request whose Content-Type is application/grpc or application/grpc+...
bool is_grpc_content_type(std::string_view content_type);

// grpc-timeout ("1-8 digits" then H, M, S, m, u or n), in milliseconds,
// rounded up (a timeout below a millisecond is one); nullopt when malformed.
std::optional<int64_t> parse_grpc_timeout(std::string_view v);

// The gRPC status for an HTTP status Holdfast generated (gRPC's
// http-grpc-status-mapping, as Envoy applies it); `deadline`: the request
// carried grpc-timeout, so an upstream timeout is DEADLINE_EXCEEDED.
int grpc_status_for_http(int http_status, bool deadline);

// grpc-message's percent-encoding: bytes outside 0x20..0x7E and '%' itself.
std::string grpc_message_encode(std::string_view msg);

}  // namespace holdfast::http
