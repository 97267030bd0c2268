// The floor for any proxy in bench/run.py's topology: a single-threaded
// io_uring TCP relay that pairs each client connection with one origin
// connection and copies bytes both ways. It parses nothing, so no HTTP proxy
// can use less CPU per request than this on the same machine; run.py reports
// it beside nginx, HAProxy and Holdfast so the ratios can be read against
// what the kernel's loopback TCP path costs by itself.
//
//   floor_relay LISTEN_PORT ORIGIN_PORT      (both on 127.0.0.1)
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace {

struct Side {
  int fd = -1;
  Side* peer = nullptr;
  bool sending = false;
  bool done = false;  // its operation returned an error or end of stream
  size_t len = 0, off = 0;
  char buf[16384];
};

io_uring ring;
Side accept_tag;  // user_data of the accept operation

io_uring_sqe* sqe() {
  io_uring_sqe* s = io_uring_get_sqe(&ring);
  if (!s) {
    io_uring_submit(&ring);
    s = io_uring_get_sqe(&ring);
  }
  return s;
}

void recv_on(Side* s) {
  s->sending = false;
  io_uring_sqe* q = sqe();
  io_uring_prep_recv(q, s->fd, s->buf, sizeof s->buf, 0);
  io_uring_sqe_set_data(q, s);
}

// Sends what `s` received to its peer; the next receive waits for the send.
void send_on(Side* s) {
  s->sending = true;
  io_uring_sqe* q = sqe();
  io_uring_prep_send(q, s->peer->fd, s->buf + s->off, s->len - s->off, MSG_NOSIGNAL);
  io_uring_sqe_set_data(q, s);
}

// Each side always has one operation in flight. The first to fail shuts
// both sockets down so that the other's operation returns too; the second
// closes and frees the pair.
void end_side(Side* s) {
  s->done = true;
  if (!s->peer->done) {
    shutdown(s->fd, SHUT_RDWR);
    shutdown(s->peer->fd, SHUT_RDWR);
    return;
  }
  close(s->fd);
  close(s->peer->fd);
  delete s->peer;
  delete s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: floor_relay LISTEN_PORT ORIGIN_PORT\n");
    return 2;
  }
  io_uring_params p{};
  p.flags = IORING_SETUP_COOP_TASKRUN;
  if (io_uring_queue_init_params(4096, &ring, &p) < 0) {
    p = {};
    if (int r = io_uring_queue_init_params(4096, &ring, &p); r < 0) {
      std::fprintf(stderr, "io_uring: %s\n", std::strerror(-r));
      return 1;
    }
  }
  int one = 1;
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[1])));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(lfd, 4096) != 0) {
    std::perror("listen");
    return 1;
  }
  sockaddr_in origin = addr;
  origin.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[2])));

  auto post_accept = [&] {
    io_uring_sqe* q = sqe();
    io_uring_prep_accept(q, lfd, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data(q, &accept_tag);
  };
  post_accept();
  for (;;) {
    io_uring_submit_and_wait(&ring, 1);
    io_uring_cqe* cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      ++seen;
      auto* s = static_cast<Side*>(io_uring_cqe_get_data(cqe));
      const int res = cqe->res;
      if (s == &accept_tag) {
        post_accept();
        if (res < 0) continue;
        // A blocking connect is fine here: loopback, and only while wrk
        // opens its connections, before anything is measured.
        int ufd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(ufd, reinterpret_cast<sockaddr*>(&origin), sizeof origin) != 0) {
          close(res);
          close(ufd);
          continue;
        }
        setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        auto* a = new Side;
        auto* b = new Side;
        a->fd = res;
        b->fd = ufd;
        a->peer = b;
        b->peer = a;
        recv_on(a);
        recv_on(b);
        continue;
      }
      if (res <= 0) {
        end_side(s);
        continue;
      }
      if (!s->sending) {
        s->len = static_cast<size_t>(res);
        s->off = 0;
        send_on(s);
      } else if ((s->off += static_cast<size_t>(res)) < s->len) {
        send_on(s);
      } else {
        recv_on(s);
      }
    }
    io_uring_cq_advance(&ring, seen);
  }
}
