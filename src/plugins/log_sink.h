// Where the logger plugins' entries go: a bounded queue per plugin
// configuration, filled by workers (a short lock, never I/O) and emptied by
// the control thread, which batches them as APISIX's batch processor does
// (batch_max_size, inactive_timeout, buffer_duration, max_retry_count,
// retry_delay) and sends each batch (http-logger: a POST; file-logger: an
// append). A full queue drops the entry and counts it; a worker never
// waits for a collector.
#pragma once
#include <boost/asio/any_io_executor.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace holdfast::plugins::logsink {

struct Batching {
  std::string name;             // the batch processor's name (log lines)
  int64_t batch_max_size = 1000;
  int64_t inactive_timeout = 5;  // s without a new entry: send
  int64_t buffer_duration = 60;  // s since the oldest entry: send
  int64_t max_retry_count = 0;
  int64_t retry_delay = 1;       // s
};

// How a batch leaves. Runs on the control thread.
struct Destination {
  virtual ~Destination() = default;
  // The batch's payload from its entries (each one JSON document).
  virtual std::string encode(const std::vector<std::string>& entries) const = 0;
  // Sends it; an error (no secret in it) makes the batch retried.
  virtual void send(boost::asio::any_io_executor ex, std::string payload,
                    std::function<void(std::string error)> done) = 0;
};

class Sink;

// The sink of one plugin configuration: the same plugin and configuration
// after a reload gets the same sink, so queued entries are kept.
std::shared_ptr<Sink> sink_for(const std::string& plugin, const std::string& conf_key, const Batching& b,
                               std::function<std::unique_ptr<Destination>()> make_destination);

// Worker side: queues one entry (false: the queue was full; counted).
bool push(Sink& s, std::string entry);

// Control thread, a few times a second: sends what is due.
void service(boost::asio::any_io_executor ex);
// Control thread, at shutdown: sends everything queued, once, without retries.
void flush_all(boost::asio::any_io_executor ex);

// holdfast_log_* metrics (entries dropped, batches sent and failed), by plugin.
std::string prometheus();

// Bounds of one queue.
constexpr size_t kMaxQueuedEntries = 100000;
constexpr size_t kMaxQueuedBytes = 64u << 20;

}  // namespace holdfast::plugins::logsink
