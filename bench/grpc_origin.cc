// A gRPC origin for the benchmark: h2c with prior knowledge, one thread, one
// epoll loop, nghttp2. Every request is answered as a unary call once its
// body has ended: HEADERS (200, application/grpc), one DATA frame echoing the
// request's message, then trailers with grpc-status 0. It measures the
// proxies, not itself, so it does no more than that (a Python origin would
// take most of a core on this 2-core machine).
//
//   grpc_origin PORT     listens on 127.0.0.1:PORT until killed
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>

namespace {

struct Call {
  std::string body;  // the request's gRPC messages, echoed back
  size_t sent = 0;
};

struct Conn {
  int fd = -1;
  nghttp2_session* session = nullptr;
  std::unordered_map<int32_t, Call> calls;
  bool want_out = false;
};

int epfd = -1;

ssize_t on_send(nghttp2_session*, const uint8_t* data, size_t len, int, void* user) {
  auto* c = static_cast<Conn*>(user);
  ssize_t n = ::send(c->fd, data, len, MSG_NOSIGNAL);
  if (n < 0) return errno == EAGAIN ? NGHTTP2_ERR_WOULDBLOCK : NGHTTP2_ERR_CALLBACK_FAILURE;
  return n;
}

ssize_t read_body(nghttp2_session*, int32_t stream, uint8_t* buf, size_t len, uint32_t* flags, nghttp2_data_source*,
                  void* user) {
  auto* c = static_cast<Conn*>(user);
  auto it = c->calls.find(stream);
  if (it == c->calls.end()) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  Call& call = it->second;
  size_t n = std::min(len, call.body.size() - call.sent);
  std::memcpy(buf, call.body.data() + call.sent, n);
  call.sent += n;
  if (call.sent == call.body.size()) {
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    static const nghttp2_nv trailers[] = {
        {(uint8_t*)"grpc-status", (uint8_t*)"0", 11, 1, NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_submit_trailer(c->session, stream, trailers, 1);
  }
  return static_cast<ssize_t>(n);
}

int on_chunk(nghttp2_session*, uint8_t, int32_t stream, const uint8_t* data, size_t len, void* user) {
  static_cast<Conn*>(user)->calls[stream].body.append(reinterpret_cast<const char*>(data), len);
  return 0;
}

int on_frame(nghttp2_session* s, const nghttp2_frame* f, void* user) {
  auto* c = static_cast<Conn*>(user);
  if (!(f->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
  if (f->hd.type != NGHTTP2_DATA && f->hd.type != NGHTTP2_HEADERS) return 0;
  static const nghttp2_nv head[] = {
      {(uint8_t*)":status", (uint8_t*)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
      {(uint8_t*)"content-type", (uint8_t*)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
  };
  c->calls[f->hd.stream_id];  // a call without a body echoes nothing
  nghttp2_data_provider dp{};
  dp.read_callback = read_body;
  nghttp2_submit_response(s, f->hd.stream_id, head, 2, &dp);
  return 0;
}

int on_close(nghttp2_session*, int32_t stream, uint32_t, void* user) {
  static_cast<Conn*>(user)->calls.erase(stream);
  return 0;
}

void close_conn(Conn* c) {
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, nullptr);
  ::close(c->fd);
  nghttp2_session_del(c->session);
  delete c;
}

// Sends what nghttp2 has; false when the connection is done.
bool flush(Conn* c) {
  if (nghttp2_session_send(c->session) != 0) return false;
  bool out = nghttp2_session_want_write(c->session);
  if (out != c->want_out) {
    epoll_event ev{};
    ev.events = out ? (EPOLLIN | EPOLLOUT) : EPOLLIN;
    ev.data.ptr = c;
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = out;
  }
  return nghttp2_session_want_read(c->session) || out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: grpc_origin PORT\n");
    return 2;
  }
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[1])));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(lfd, 1024) != 0) {
    std::perror("grpc_origin: listen");
    return 1;
  }
  nghttp2_session_callbacks* cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_send_callback(cbs, on_send);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);

  epfd = epoll_create1(0);
  epoll_event lev{};
  lev.events = EPOLLIN;
  lev.data.ptr = nullptr;
  epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
  epoll_event evs[256];
  static uint8_t buf[65536];
  for (;;) {
    int n = epoll_wait(epfd, evs, 256, -1);
    for (int i = 0; i < n; ++i) {
      auto* c = static_cast<Conn*>(evs[i].data.ptr);
      if (!c) {
        for (;;) {
          int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK);
          if (fd < 0) break;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          c = new Conn;
          c->fd = fd;
          nghttp2_session_server_new(&c->session, cbs, c);
          nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000}};
          nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 1);
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.ptr = c;
          epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
          if (!flush(c)) close_conn(c);
        }
        continue;
      }
      bool alive = true;
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        ssize_t r = ::recv(c->fd, buf, sizeof buf, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN)) alive = false;
        else if (r > 0 && nghttp2_session_mem_recv(c->session, buf, static_cast<size_t>(r)) < 0) alive = false;
      }
      if (alive) alive = flush(c);
      if (!alive) close_conn(c);
    }
  }
}
