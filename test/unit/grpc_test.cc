#include "http/grpc.h"

#include <gtest/gtest.h>

using namespace holdfast::http;

TEST(Grpc, ContentType) {
  EXPECT_TRUE(is_grpc_content_type("application/grpc"));
  EXPECT_TRUE(is_grpc_content_type("application/grpc+proto"));
  EXPECT_TRUE(is_grpc_content_type("Application/GRPC"));
  EXPECT_TRUE(is_grpc_content_type("application/grpc; charset=x"));
  EXPECT_FALSE(is_grpc_content_type("application/grpc-web"));
  EXPECT_FALSE(is_grpc_content_type("application/json"));
  EXPECT_FALSE(is_grpc_content_type(""));
}

TEST(Grpc, Timeout) {
  EXPECT_EQ(parse_grpc_timeout("1H"), 3'600'000);
  EXPECT_EQ(parse_grpc_timeout("2M"), 120'000);
  EXPECT_EQ(parse_grpc_timeout("3S"), 3000);
  EXPECT_EQ(parse_grpc_timeout("300m"), 300);
  EXPECT_EQ(parse_grpc_timeout("1500u"), 2);  // rounded up
  EXPECT_EQ(parse_grpc_timeout("1n"), 1);
  EXPECT_EQ(parse_grpc_timeout("0m"), 0);
  EXPECT_EQ(parse_grpc_timeout("99999999S"), 99'999'999'000);
  EXPECT_FALSE(parse_grpc_timeout("123456789S"));  // nine digits
  EXPECT_FALSE(parse_grpc_timeout("S"));
  EXPECT_FALSE(parse_grpc_timeout("10"));
  EXPECT_FALSE(parse_grpc_timeout("10x"));
  EXPECT_FALSE(parse_grpc_timeout("-1S"));
  EXPECT_FALSE(parse_grpc_timeout(""));
}

TEST(Grpc, StatusForHttp) {
  EXPECT_EQ(grpc_status_for_http(401, false), 16);
  EXPECT_EQ(grpc_status_for_http(403, false), 7);
  EXPECT_EQ(grpc_status_for_http(404, false), 12);
  EXPECT_EQ(grpc_status_for_http(429, false), 14);
  EXPECT_EQ(grpc_status_for_http(502, false), 14);
  EXPECT_EQ(grpc_status_for_http(503, false), 14);
  EXPECT_EQ(grpc_status_for_http(504, false), 14);
  EXPECT_EQ(grpc_status_for_http(504, true), 4);
  EXPECT_EQ(grpc_status_for_http(400, false), 2);
  EXPECT_EQ(grpc_status_for_http(500, false), 2);
}

TEST(Grpc, MessageEncoding) {
  EXPECT_EQ(grpc_message_encode("plain text"), "plain text");
  EXPECT_EQ(grpc_message_encode("100%"), "100%25");
  EXPECT_EQ(grpc_message_encode("a\r\nb"), "a%0D%0Ab");
  EXPECT_EQ(grpc_message_encode("\xc3\xa9"), "%C3%A9");
}
