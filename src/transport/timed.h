// Deadlines and buffers shared by every byte stream. A Timed sits in its
// worker's deadline list; the worker's sweeper cancels the stream when the
// deadline passes, so that no read or write needs a timer of its own.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace holdfast::transport {

class Stream;

// Milliseconds on the steady clock.
int64_t now_ms();

struct Timed {
  Stream* stream = nullptr;
  int64_t deadline = 0;   // ms since steady epoch; 0 = none
  bool fired = false;
  bool idle = false;      // waiting for a request: cancelled on drain
  bool reusable = false;  // idle after a response (keep-alive, lingering): shed at limits
  bool tunnel = false;    // an upgraded connection: cancelled on drain
  Timed* prev = nullptr;
  Timed* next = nullptr;
};

// A byte buffer with a window [begin, end) of unread data.
struct Buf {
  std::vector<char> data;
  size_t begin = 0, end = 0;
  size_t avail() const { return end - begin; }
  void compact();
};

}  // namespace holdfast::transport
