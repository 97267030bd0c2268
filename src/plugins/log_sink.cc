#include "plugins/log_sink.h"

#include <fmt/format.h>

#include <chrono>
#include <deque>
#include <map>
#include <mutex>

#include "core/log.h"

namespace holdfast::plugins::logsink {

class Sink {
 public:
  std::string plugin;
  Batching b;
  std::function<std::unique_ptr<Destination>()> make;

  // Filled by workers.
  std::mutex mu;
  std::deque<std::string> queue;
  size_t bytes = 0;
  int64_t first_ms = 0;  // when the oldest queued entry came
  int64_t last_ms = 0;   // when the newest came
  uint64_t dropped = 0;

  // Control thread only.
  std::unique_ptr<Destination> dest;
  bool busy = false;
  std::vector<std::string> batch;  // being sent, or waiting for its retry
  int64_t retries = 0;
  int64_t retry_at = 0;
};

namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Counters {
  uint64_t sent = 0, failed = 0, lost = 0;  // batches sent, batches given up, entries in those
};

struct Registry {
  std::mutex mu;
  std::map<std::string, std::shared_ptr<Sink>> sinks;
  std::map<std::string, Counters> counters;  // by plugin (control thread)
  std::map<std::string, uint64_t> dropped_gone;  // queue drops of sinks that are gone
};

Registry& registry() {
  static Registry r;
  return r;
}

void try_send(const std::shared_ptr<Sink>& s, boost::asio::any_io_executor ex, bool force);

void finished(const std::shared_ptr<Sink>& s, boost::asio::any_io_executor ex, const std::string& error) {
  s->busy = false;
  Counters& c = registry().counters[s->plugin];
  if (error.empty()) {
    ++c.sent;
    s->batch.clear();
    s->retries = 0;
    try_send(s, ex, false);  // more may be due already
    return;
  }
  if (s->retries < s->b.max_retry_count) {
    ++s->retries;
    s->retry_at = now_ms() + s->b.retry_delay * 1000;
    log::warn("{}: batch of {} entries failed ({}); retry {} of {} in {}s", s->b.name, s->batch.size(), error,
              s->retries, s->b.max_retry_count, s->b.retry_delay);
    return;
  }
  log::error("{}: batch of {} entries failed ({}); dropped after {} retries", s->b.name, s->batch.size(), error,
             s->retries);
  ++c.failed;
  c.lost += s->batch.size();
  s->batch.clear();
  s->retries = 0;
}

// Takes the next batch when one is due (or `force`: whatever is queued).
void try_send(const std::shared_ptr<Sink>& s, boost::asio::any_io_executor ex, bool force) {
  if (s->busy) return;
  const int64_t now = now_ms();
  if (!s->batch.empty() && now < s->retry_at && !force) return;
  if (s->batch.empty()) {
    std::lock_guard lk(s->mu);
    if (s->queue.empty()) return;
    const bool due = force || static_cast<int64_t>(s->queue.size()) >= s->b.batch_max_size ||
                     now - s->last_ms >= s->b.inactive_timeout * 1000 ||
                     now - s->first_ms >= s->b.buffer_duration * 1000;
    if (!due) return;
    const size_t n = std::min<size_t>(s->queue.size(), static_cast<size_t>(s->b.batch_max_size));
    for (size_t i = 0; i < n; ++i) {
      s->bytes -= s->queue.front().size();
      s->batch.push_back(std::move(s->queue.front()));
      s->queue.pop_front();
    }
    s->first_ms = now;  // the rest waits at most buffer_duration from here
  }
  if (!s->dest) s->dest = s->make();
  s->busy = true;
  std::string payload = s->dest->encode(s->batch);
  s->dest->send(ex, std::move(payload), [s, ex](std::string error) { finished(s, ex, error); });
}

}  // namespace

std::shared_ptr<Sink> sink_for(const std::string& plugin, const std::string& conf_key, const Batching& b,
                               std::function<std::unique_ptr<Destination>()> make_destination) {
  Registry& r = registry();
  std::lock_guard lk(r.mu);
  auto& slot = r.sinks[plugin + '\n' + conf_key];
  if (!slot) {
    slot = std::make_shared<Sink>();
    slot->plugin = plugin;
    slot->b = b;
    slot->make = std::move(make_destination);
  }
  return slot;
}

bool push(Sink& s, std::string entry) {
  const int64_t now = now_ms();
  std::lock_guard lk(s.mu);
  if (s.queue.size() >= kMaxQueuedEntries || s.bytes + entry.size() > kMaxQueuedBytes) {
    ++s.dropped;
    return false;
  }
  if (s.queue.empty()) s.first_ms = now;
  s.last_ms = now;
  s.bytes += entry.size();
  s.queue.push_back(std::move(entry));
  return true;
}

void service(boost::asio::any_io_executor ex) {
  Registry& r = registry();
  std::vector<std::shared_ptr<Sink>> live;
  {
    std::lock_guard lk(r.mu);
    for (auto it = r.sinks.begin(); it != r.sinks.end();) {
      Sink& s = *it->second;
      bool empty;
      {
        std::lock_guard sl(s.mu);
        empty = s.queue.empty();
      }
      // No plugin instance holds it any more and it has nothing left: gone.
      if (it->second.use_count() == 1 && empty && s.batch.empty() && !s.busy) {
        std::lock_guard sl(s.mu);
        r.dropped_gone[s.plugin] += s.dropped;
        it = r.sinks.erase(it);
        continue;
      }
      live.push_back(it->second);
      ++it;
    }
  }
  // A sink no configuration uses sends what it still has at once.
  for (auto& s : live) try_send(s, ex, s.use_count() == 2);
}

void flush_all(boost::asio::any_io_executor ex) {
  Registry& r = registry();
  std::vector<std::shared_ptr<Sink>> live;
  {
    std::lock_guard lk(r.mu);
    for (auto& [k, s] : r.sinks) live.push_back(s);
  }
  for (auto& s : live) try_send(s, ex, true);
}

std::string prometheus() {
  Registry& r = registry();
  std::map<std::string, uint64_t> dropped;
  std::map<std::string, Counters> counters;
  {
    std::lock_guard lk(r.mu);
    dropped = r.dropped_gone;
    for (auto& [k, s] : r.sinks) {
      std::lock_guard sl(s->mu);
      dropped[s->plugin] += s->dropped;
    }
    counters = r.counters;
  }
  for (auto& [p, c] : counters) dropped.emplace(p, 0);
  if (dropped.empty()) return {};
  std::string out =
      "# HELP holdfast_log_entries_dropped_total Log entries not sent: queue full (reason=\"queue\") or their batch "
      "failed every retry (reason=\"send\")\n# TYPE holdfast_log_entries_dropped_total counter\n";
  for (auto& [p, n] : dropped) {
    out += fmt::format("holdfast_log_entries_dropped_total{{plugin=\"{}\",reason=\"queue\"}} {}\n", p, n);
    out += fmt::format("holdfast_log_entries_dropped_total{{plugin=\"{}\",reason=\"send\"}} {}\n", p, counters[p].lost);
  }
  out += "# HELP holdfast_log_batches_total Log batches by outcome\n# TYPE holdfast_log_batches_total counter\n";
  for (auto& [p, n] : dropped) {
    out += fmt::format("holdfast_log_batches_total{{plugin=\"{}\",result=\"sent\"}} {}\n", p, counters[p].sent);
    out += fmt::format("holdfast_log_batches_total{{plugin=\"{}\",result=\"failed\"}} {}\n", p, counters[p].failed);
  }
  return out;
}

}  // namespace holdfast::plugins::logsink
