// The request pipeline: reads requests from a byte stream, matches a route,
// runs the plugin phases, exchanges the request with an upstream node and
// logs it. Written once against transport::Stream: plain TCP, TLS and
// HTTP/2 streams all run this same code. One coroutine per connection.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <memory>
#include <string>

#include "router/ipmatch.h"
#include "router/vars.h"
#include "transport/stream.h"
#include "transport/timed.h"

namespace holdfast::transport {
class TlsStream;
}
namespace holdfast::tls {
class CertTable;
struct SslObject;
}

namespace holdfast::proxy {

// What a TLS handshake established, for the pipeline's mTLS checks and the
// $ssl_* variables.
struct TlsConnInfo {
  router::TlsVars vars;
  std::shared_ptr<const tls::SslObject> object;      // selected by SNI
  std::shared_ptr<const tls::CertTable> certificates;  // the table it came from (Host lookups)
  // A resumed session first established under another SNI (APISIX's
  // verify_tls_session_resumption).
  bool session_sni_mismatch = false;
};

class Worker;

// What the pipeline knows of the connection beneath it, filled in by the
// listener that accepted it.
struct ConnInfo {
  std::string remote_ip;       // IPv4-mapped IPv6 addresses as IPv4
  router::IpAddr remote_addr;
  uint16_t remote_port = 0;
  uint16_t local_port = 0;
  const char* scheme = "http";
  std::string server_name;     // TLS: the SNI the certificate was chosen by (or fallback_sni)
  std::shared_ptr<const TlsConnInfo> tls;  // null on plain TCP
  // An HTTP/2 stream (transport/h2_server.h): it carries exactly one
  // request, $server_protocol is HTTP/2.0, and the TCP connection beneath
  // is counted (open_conns_) by its session, not per stream.
  bool http2 = false;
};

// Fills ConnInfo from a connected TCP socket.
ConnInfo tcp_conn_info(boost::asio::ip::tcp::socket& sock);

// A pooled upstream connection. Plain TCP runs on `tcp` directly (stream ==
// &tcp, no TLS object, no extra allocation); for an https upstream the
// connected socket moves into `tls` and `stream` points there.
struct UpstreamConn {
  explicit UpstreamConn(boost::asio::io_context& io) : tcp(io), stream(&tcp) {}
  ~UpstreamConn();
  UpstreamConn(const UpstreamConn&) = delete;
  UpstreamConn& operator=(const UpstreamConn&) = delete;
  // The TCP socket under either (the idle pool's MSG_PEEK check reads it).
  boost::asio::ip::tcp::socket& socket();
  transport::TcpStream tcp;
  std::unique_ptr<transport::TlsStream> tls;
  // scheme grpc/grpcs: the call's HTTP/2 stream (proxy/upstream_h2.h),
  // shared with the request body's relay while both directions stream.
  std::shared_ptr<transport::Stream> h2;
  transport::Stream* stream;
  transport::Buf buf;
  transport::Timed timed;
  int requests = 0;
  int64_t idle_since = 0;
  int64_t idle_timeout_ms = 60000;
};

// Serves requests from `stream` until either side ends the connection (an
// HTTP/2 stream: its one request). `already` holds bytes read from the
// stream before (h2c preface sniffing). The caller owns the stream.
boost::asio::awaitable<void> serve(Worker& w, transport::Stream& stream, const ConnInfo& info,
                                   std::string_view already = {});

}  // namespace holdfast::proxy
