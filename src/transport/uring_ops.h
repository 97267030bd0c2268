// Force-included first in every translation unit of the io_uring build
// (CMakeLists.txt). Asio 1.81 prepares every socket read and write as
// IORING_OP_RECVMSG / IORING_OP_SENDMSG, so the kernel copies and checks a
// msghdr and imports an iovec array for each one. With a single buffer and
// no address (every TCP read, and every write the proxy gathers into one
// buffer) IORING_OP_RECV / IORING_OP_SEND do the same I/O with less work.
// The macros below reroute Asio's calls; liburing's own definitions are
// already compiled by then and keep their names.
#pragma once
#include <liburing.h>
#include <sys/socket.h>

static inline void holdfast_prep_recvmsg(struct io_uring_sqe* sqe, int fd, struct msghdr* msg, unsigned flags) {
  if (msg->msg_iovlen == 1 && !msg->msg_name && !msg->msg_control)
    io_uring_prep_recv(sqe, fd, msg->msg_iov[0].iov_base, msg->msg_iov[0].iov_len, static_cast<int>(flags));
  else
    io_uring_prep_recvmsg(sqe, fd, msg, flags);
}

static inline void holdfast_prep_sendmsg(struct io_uring_sqe* sqe, int fd, const struct msghdr* msg, unsigned flags) {
  if (msg->msg_iovlen == 1 && !msg->msg_name && !msg->msg_control)
    io_uring_prep_send(sqe, fd, msg->msg_iov[0].iov_base, msg->msg_iov[0].iov_len, static_cast<int>(flags));
  else
    io_uring_prep_sendmsg(sqe, fd, msg, flags);
}

#define io_uring_prep_recvmsg holdfast_prep_recvmsg
#define io_uring_prep_sendmsg holdfast_prep_sendmsg
