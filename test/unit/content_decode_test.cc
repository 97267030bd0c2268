// Decoding gzip and br response bodies for response-rewrite (APISIX's
// content-decode.lua), with the output bounded by max_resp_body_size.
#include "http/content_decode.h"

#include <brotli/encode.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <string>

using namespace holdfast::http;

namespace {

std::string gzip(const std::string& in) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, in.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string brotli(const std::string& in) {
  size_t n = BrotliEncoderMaxCompressedSize(in.size());
  std::string out(n, '\0');
  EXPECT_TRUE(BrotliEncoderCompress(BROTLI_DEFAULT_QUALITY, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_GENERIC, in.size(),
                                    reinterpret_cast<const uint8_t*>(in.data()), &n,
                                    reinterpret_cast<uint8_t*>(out.data())));
  out.resize(n);
  return out;
}

std::string text() {
  std::string s;
  for (int i = 0; i < 5000; ++i) s += "hello world " + std::to_string(i) + "\n";
  return s;
}

}  // namespace

TEST(ContentDecode, RoundTripsGzipAndBr) {
  const std::string plain = text();
  for (auto [coding, encoded] : {std::pair{"gzip", gzip(plain)}, std::pair{"br", brotli(plain)}}) {
    std::string out;
    auto d = decode_content(coding, encoded, plain.size(), out);
    EXPECT_EQ(d.status, DecodeStatus::ok) << coding << " " << d.error;
    EXPECT_EQ(out, plain) << coding;
  }
}

TEST(ContentDecode, CodingNamesAreCaseInsensitiveAndSingle) {
  std::string out;
  EXPECT_EQ(decode_content(" GZIP ", gzip("x"), 10, out).status, DecodeStatus::ok);
  EXPECT_EQ(out, "x");
  EXPECT_EQ(decode_content("Br", brotli("y"), 10, out).status, DecodeStatus::ok);
  EXPECT_EQ(out, "y");
  // APISIX's dispatch_decoder knows gzip and br only.
  for (const char* c : {"deflate", "identity", "gzip, br", "x-gzip", ""}) {
    EXPECT_FALSE(content_coding_supported(c)) << c;
    EXPECT_EQ(decode_content(c, "abc", 10, out).status, DecodeStatus::unsupported) << c;
  }
}

TEST(ContentDecode, BombStopsAtTheLimit) {
  // 10 MiB of zeros: about 10 KiB as gzip, a few bytes as br.
  const std::string zeros(10 * 1024 * 1024, '\0');
  for (auto [coding, encoded] : {std::pair{"gzip", gzip(zeros)}, std::pair{"br", brotli(zeros)}}) {
    ASSERT_LT(encoded.size(), 64u * 1024) << coding;
    std::string out;
    auto d = decode_content(coding, encoded, 1000, out);
    EXPECT_EQ(d.status, DecodeStatus::limited) << coding;
    EXPECT_EQ(out, std::string(1000, '\0')) << coding;
    // Never more room than the limit (+ one step): the whole body was not inflated.
    EXPECT_LE(out.capacity(), 1000u + 64 * 1024) << coding;
  }
}

TEST(ContentDecode, ExactlyTheLimitIsWhole) {
  const std::string plain = text();
  for (auto [coding, encoded] : {std::pair{"gzip", gzip(plain)}, std::pair{"br", brotli(plain)}}) {
    std::string out;
    EXPECT_EQ(decode_content(coding, encoded, plain.size(), out).status, DecodeStatus::ok) << coding;
    EXPECT_EQ(decode_content(coding, encoded, plain.size() - 1, out).status, DecodeStatus::limited) << coding;
    EXPECT_EQ(out, plain.substr(0, plain.size() - 1)) << coding;
  }
}

TEST(ContentDecode, CutInputGivesAPrefix) {
  const std::string plain = text();
  for (auto [coding, encoded] : {std::pair{"gzip", gzip(plain)}, std::pair{"br", brotli(plain)}}) {
    std::string out;
    auto d = decode_content(coding, std::string_view(encoded).substr(0, encoded.size() / 2), plain.size(), out);
    EXPECT_EQ(d.status, DecodeStatus::incomplete) << coding;
    EXPECT_LT(out.size(), plain.size()) << coding;
    EXPECT_EQ(out, plain.substr(0, out.size())) << coding;
  }
}

TEST(ContentDecode, CorruptInputIsAnError) {
  std::string out;
  auto d = decode_content("gzip", "this is not gzip at all", 100, out);
  EXPECT_EQ(d.status, DecodeStatus::corrupt);
  EXPECT_NE(d.error.find("inflate gzip err"), std::string::npos) << d.error;
  // brotli has no checksum: a stream libbrotlidec refuses (non-zero padding).
  d = decode_content("br", "this is not brotli", 100, out);
  EXPECT_EQ(d.status, DecodeStatus::corrupt);
  EXPECT_NE(d.error.find("brotli decode err"), std::string::npos) << d.error;
}
