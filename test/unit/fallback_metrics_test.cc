#include <gtest/gtest.h>

#include "config/fallback/fallback.h"

using holdfast::config::fallback::count_failure;

// A store's error code becomes a metric label: a hostile store must not be
// able to forge /metrics lines or grow the series without bound.
TEST(FallbackMetrics, StoreErrorCodesAreSafeBoundedLabels) {
  std::map<std::string, uint64_t> f;
  count_failure(f, "AccessDenied");
  count_failure(f, "AccessDenied");
  count_failure(f, "a\"} 1\nholdfast_fake 1");
  count_failure(f, "");
  EXPECT_EQ(f["AccessDenied"], 2u);
  EXPECT_EQ(f.count("a___1_holdfast_fake_1"), 1u);
  EXPECT_EQ(f["other"], 1u);
  for (const auto& [k, n] : f)
    for (char c : k) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-') << k;
  for (int i = 0; i < 100; ++i) count_failure(f, "Code" + std::to_string(i));
  EXPECT_LE(f.size(), 33u);
  EXPECT_GT(f["other"], 1u);
  count_failure(f, std::string(500, 'x'));
  for (const auto& [k, n] : f) EXPECT_LE(k.size(), 64u);
}
