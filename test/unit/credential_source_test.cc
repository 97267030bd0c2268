// cloud::read_token_file on what a path may name besides a token file.
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "cloud/credential_source.h"

using holdfast::cloud::kMaxTokenFileBytes;
using holdfast::cloud::read_token_file;

namespace {

std::string temp_path(const char* name) {
  return ::testing::TempDir() + "/credential_source_test_" + std::to_string(::getpid()) + "_" + name;
}

void write_file(const std::string& path, const std::string& body) {
  std::ofstream(path, std::ios::binary) << body;
}

}  // namespace

TEST(TokenFile, TrailingNewlinesAndSpacesAreTrimmed) {
  const std::string p = temp_path("token");
  write_file(p, "eyJhbGciOi.payload.sig \r\n\n");
  auto t = read_token_file(p);
  ::unlink(p.c_str());
  ASSERT_TRUE(t.ok()) << t.error();
  EXPECT_EQ(*t, "eyJhbGciOi.payload.sig");
}

TEST(TokenFile, AFifoIsRefusedWithoutBlocking) {
  // open() of a FIFO without a writer would wait for one, on the control thread.
  const std::string p = temp_path("fifo");
  ASSERT_EQ(::mkfifo(p.c_str(), 0600), 0);
  auto t = read_token_file(p);
  ::unlink(p.c_str());
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().find("not a regular file"), std::string::npos) << t.error();
}

TEST(TokenFile, AnEndlessDeviceIsRefused) {
  auto t = read_token_file("/dev/zero");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().find("not a regular file"), std::string::npos) << t.error();
}

TEST(TokenFile, ALargeFileIsRefusedAndNotEchoed) {
  const std::string p = temp_path("big");
  write_file(p, std::string(kMaxTokenFileBytes + 1, 'k'));
  auto t = read_token_file(p);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().find("larger than 65536 bytes"), std::string::npos) << t.error();
  EXPECT_EQ(t.error().find("kkkk"), std::string::npos);
  // The largest allowed size is read whole.
  write_file(p, std::string(kMaxTokenFileBytes, 'k'));
  auto u = read_token_file(p);
  ::unlink(p.c_str());
  ASSERT_TRUE(u.ok()) << u.error();
  EXPECT_EQ(u->size(), kMaxTokenFileBytes);
}

TEST(TokenFile, AMissingFileIsNamed) {
  auto t = read_token_file("/nonexistent/holdfast-token");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().find("/nonexistent/holdfast-token"), std::string::npos);
}
