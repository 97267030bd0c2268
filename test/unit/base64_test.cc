// nginx's base64 decoders as Lua sees them (ngx.decode_base64,
// ngx.base64.decode_base64url), which basic-auth and jwt-auth read
// credentials with: padding optional, nothing after '=' read, 4n+1 refused.
#include <gtest/gtest.h>

#include "core/base64.h"

using holdfast::base64url_encode;
using holdfast::ngx_decode_base64;
using holdfast::ngx_decode_base64url;

TEST(NgxBase64, DecodesAsNginx) {
  EXPECT_EQ(ngx_decode_base64("dXNlcjpwdw=="), "user:pw");
  EXPECT_EQ(ngx_decode_base64("dXNlcjpwdw"), "user:pw");        // padding optional
  EXPECT_EQ(ngx_decode_base64("dXNlcjpwdw==garbage!"), "user:pw");  // nothing after '=' is read
  EXPECT_FALSE(ngx_decode_base64("dXNlc"));                      // 4n+1
  EXPECT_FALSE(ngx_decode_base64("dXN lcg"));                    // a space
  EXPECT_FALSE(ngx_decode_base64("_-8"));                        // the URL alphabet
  EXPECT_EQ(ngx_decode_base64url("_-8"), std::string("\xff\xef", 2));
  EXPECT_EQ(ngx_decode_base64(""), "");
}

TEST(NgxBase64, UrlEncodeRoundTrips) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (size_t n = 0; n < 10; ++n) {
    std::string in = all.substr(n * 7, n * 3);
    std::string enc = base64url_encode(in);
    EXPECT_EQ(enc.find('='), std::string::npos);
    EXPECT_EQ(ngx_decode_base64url(enc), in);
  }
}
