// Bounds on what a client may send in one request (nginx_config.http.*,
// holdfast.* in config.yaml). Plain data: the HTTP codec enforces them.
#pragma once
#include <cstddef>
#include <cstdint>

namespace holdfast {

struct HttpLimits {
  size_t max_head_bytes = 32 * 1024;   // request line + headers
  size_t max_uri_bytes = 8 * 1024;
  size_t max_headers = 100;
  uint64_t max_body_bytes = 0;         // 0 = unlimited
};

}  // namespace holdfast
