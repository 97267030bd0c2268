// The logger plugins' queues (plugins/log_sink): bounded, and one per
// plugin configuration, shared across reloads.
#include "plugins/log_sink.h"

#include <gtest/gtest.h>

namespace ls = holdfast::plugins::logsink;

namespace {

struct NullDestination : ls::Destination {
  std::string encode(const std::vector<std::string>&) const override { return {}; }
  void send(boost::asio::any_io_executor, std::string, std::function<void(std::string)> done) override { done({}); }
};

std::unique_ptr<ls::Destination> make() { return std::make_unique<NullDestination>(); }

}  // namespace

TEST(LogSink, SameConfigurationSameSink) {
  auto a = ls::sink_for("http-logger", "{\"uri\":\"http://a\"}", {}, make);
  auto b = ls::sink_for("http-logger", "{\"uri\":\"http://a\"}", {}, make);
  auto c = ls::sink_for("http-logger", "{\"uri\":\"http://b\"}", {}, make);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(LogSink, QueueIsBoundedAndDropsAreCounted) {
  auto s = ls::sink_for("file-logger", "bound-test", {}, make);
  for (size_t i = 0; i < ls::kMaxQueuedEntries; ++i) ASSERT_TRUE(ls::push(*s, "{}"));
  EXPECT_FALSE(ls::push(*s, "{}"));
  EXPECT_FALSE(ls::push(*s, "{}"));
  EXPECT_NE(ls::prometheus().find("holdfast_log_entries_dropped_total{plugin=\"file-logger\",reason=\"queue\"} 2"),
            std::string::npos)
      << ls::prometheus();
  // One entry larger than the byte bound is dropped too.
  auto big = ls::sink_for("file-logger", "bytes-test", {}, make);
  EXPECT_FALSE(ls::push(*big, std::string(ls::kMaxQueuedBytes + 1, 'x')));
  EXPECT_TRUE(ls::push(*big, "{}"));
}
