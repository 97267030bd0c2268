// A worker: one thread, one io_context, its own SO_REUSEPORT listeners, its
// own upstream connection pools. It serves from the snapshot the manager
// last published to it and never blocks.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/config.h"
#include "snapshot/snapshot.h"
#include "transport/timed.h"

typedef struct ssl_session_st SSL_SESSION;

namespace boost::asio::ssl {
class context;
}

namespace holdfast::proxy {

using transport::Timed;  // a stream with a deadline, swept by the worker
struct UpstreamConn;   // a pooled upstream connection
class H2Pool;          // HTTP/2 upstream connections (proxy/upstream_h2.h)
class AccessLog;

class Worker {
 public:
  Worker(int id, const NodeConfig& cfg, std::shared_ptr<AccessLog> access_log);
  ~Worker();

  // Opens listeners (SO_REUSEPORT) on the calling thread; throws on failure.
  void listen(const std::vector<ListenAddr>& addrs);
  // TLS listeners (apisix.ssl.listen). A handshake picks its certificate
  // from the snapshot current when the connection was accepted (the
  // context's client-hello callback, src/tls/server_context.h).
  void listen_tls(const std::vector<ListenAddr>& addrs, std::shared_ptr<boost::asio::ssl::context> ctx);
  void start();                                   // spawns the thread
  void join();
  void publish(std::shared_ptr<const snapshot::Snapshot> snap);  // thread-safe
  void drain();                                   // stop accepting, finish in-flight
  // Ends the worker: closes its listeners and every connection it still
  // has, and lets each coroutine run to its end, so that the thread returns
  // with no operation pending (Asio's io_uring backend destroys an operation
  // still queued on a closed socket only with the io_context, after the
  // socket service it refers to is gone). Thread-safe.
  void stop();
  // After stop(): true once the thread has returned, within `timeout`.
  bool wait_stopped(std::chrono::milliseconds timeout);
  // Last resort when wait_stopped() failed: stops the io_context with work
  // still pending. The process must then exit without destroying the worker.
  void abort();
  bool idle() const { return active_requests_.load() == 0 && open_conns_.load() == 0; }
  uint16_t bound_port(size_t i) const;

  // --- used by connection coroutines (worker thread only) ---
  boost::asio::io_context& io() { return io_; }
  int id() const { return id_; }
  const NodeConfig& cfg() const { return cfg_; }
  std::shared_ptr<const snapshot::Snapshot> snapshot() const { return snapshot_; }
  bool draining() const { return draining_; }
  void watch(Timed* t);
  void unwatch(Timed* t);
  std::unique_ptr<UpstreamConn> take_pooled(const std::string& key);
  void give_back(const std::string& key, std::unique_ptr<UpstreamConn> c, int pool_size);
  // The last resumable TLS session of an upstream pool key (null: none), and
  // keeping one (takes the reference SSL_get1_session gave).
  SSL_SESSION* tls_session(const std::string& key) const;
  void keep_tls_session(const std::string& key, SSL_SESSION* s);
  // The HTTP/2 (grpc, grpcs) upstream connections of this worker.
  H2Pool& h2_pool();
  AccessLog* access_log() { return access_log_.get(); }
  // A client connection ended: lets a worker held at its connection cap
  // accept again.
  void connection_closed();
  // Closes idle keep-alive client connections and pooled upstream ones
  // (at the connection cap or the descriptor limit, as nginx reuses them).
  void shed_idle();
  std::atomic<int64_t> active_requests_{0};
  std::atomic<int64_t> open_conns_{0};
  // Since start, for the node-level metrics (written by this worker only).
  std::atomic<uint64_t> accepted_total_{0};
  std::atomic<uint64_t> requests_total_{0};

 private:
  void sweep();
  void begin_shutdown(bool stopping);  // drain() and stop(), on the worker thread
  void clear_pool();
  boost::asio::awaitable<void> accept_loop(boost::asio::ip::tcp::acceptor& acc, bool tls);
  boost::asio::awaitable<void> serve_plain(boost::asio::ip::tcp::socket sock);
  boost::asio::awaitable<void> serve_tls(boost::asio::ip::tcp::socket sock);
  void open_listener(const ListenAddr& a, bool tls);
  boost::asio::awaitable<void> sweeper();
  boost::asio::awaitable<void> wait_for_capacity();
  void log_throttled(int64_t& last_ms, const std::string& msg);

  int id_;
  const NodeConfig& cfg_;
  boost::asio::io_context io_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  std::vector<std::unique_ptr<boost::asio::ip::tcp::acceptor>> acceptors_;
  std::vector<bool> acceptor_tls_;  // per acceptor: TLS (apisix.ssl.listen) or plain
  std::shared_ptr<boost::asio::ssl::context> tls_ctx_;
  std::shared_ptr<const snapshot::Snapshot> snapshot_;
  std::thread thread_;
  std::promise<void> stopped_;
  std::future<void> stopped_future_ = stopped_.get_future();
  bool draining_ = false;
  bool stopping_ = false;  // stop() ran: every watched socket is closed
  Timed* timed_head_ = nullptr;
  std::unordered_map<std::string, std::vector<std::unique_ptr<UpstreamConn>>> pool_;
  std::unordered_map<std::string, std::shared_ptr<SSL_SESSION>> tls_sessions_;  // by pool key
  std::shared_ptr<AccessLog> access_log_;
  std::unique_ptr<H2Pool> h2_pool_;
  std::unique_ptr<boost::asio::steady_timer> capacity_;  // woken when a connection closes
  int64_t cap_logged_ms_ = -1'000'000, fd_logged_ms_ = -1'000'000;
};

// False when a pooled upstream connection has seen a FIN, a reset or any
// byte while it sat idle: it must be closed, never reused.
bool idle_connection_usable(int fd);

using transport::now_ms;

}  // namespace holdfast::proxy
