// A side request: an HTTP exchange a plugin describes and the pipeline
// performs on the worker's io_context (src/proxy/side_request.cc), so that
// plugins stay synchronous and nothing blocks a worker (forward-auth's auth
// service, proxy-mirror's copy). Only the plugins that send one include this.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "plugins/plugin.h"

namespace holdfast::tls {
struct ClientContext;
}

namespace holdfast::plugins {

struct SideRequest {
  std::string scheme = "http";  // http or https
  std::string host;             // an IP literal or a name (resolved on the worker, asynchronously)
  uint16_t port = 80;
  std::string method = "GET";
  std::string target = "/";     // path?query, already encoded
  // Sent as they are after Host; framing (Content-Length, Transfer-Encoding),
  // Connection and Host are the pipeline's and dropped from here.
  HeaderList headers;
  std::string host_header;      // the Host sent; empty: host[:port] of the URL
  std::string body;
  bool body_chunked = false;    // `body` is already chunk-framed (a mirrored client body)
  // Before sending, the pipeline reads the client's whole request body
  // (decoded) into `body`, up to `client_body_max` bytes; a larger one is
  // answered 413 (forward-auth's request_method POST).
  bool with_client_body = false;
  uint64_t client_body_max = 0;
  double timeout = 3;           // seconds, for the whole exchange (connect, send, response)
  size_t max_response_body = 1 << 20;  // a longer response body is an error
  bool keepalive = false;       // pool the connection on the worker (keepalive_pool, keepalive_timeout)
  int keepalive_pool = 5;
  double keepalive_timeout = 60;
  std::shared_ptr<tls::ClientContext> tls;  // https: verification as the plugin was configured
  bool detached = false;        // proxy-mirror: sent on its own, never waited for
};

struct SideResponse {
  int status = 0;               // 0: no response (see error)
  std::string error;            // why there is none: "timeout", "connection refused", ...
  bool timed_out = false;
  bool refused = false;         // never sent: its head would have carried a control character
  HeaderList headers;
  std::string body;
  // The first value of `name` (case-insensitive); null when absent.
  const std::string* header(std::string_view name) const;
};

}  // namespace holdfast::plugins
