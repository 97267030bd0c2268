// GCS requests and answers: HMAC-key signing (SigV4, scope auto/s3), and
// answers as store errors (the XML <Code>, the status, messages that name
// the request and never echo a signature's details).
#include "cloud/gcs/gcs_client.h"

#include <gtest/gtest.h>

#include <map>

#include "cloud/aws/sigv4.h"

using namespace holdfast;
using cloud::StoreErrorKind;
using cloud::WriteCondition;

namespace {
http::ClientResponse answer(int status, const std::string& code, const std::string& extra = "") {
  http::ClientResponse r;
  r.status = status;
  if (!code.empty())
    r.body = "<?xml version='1.0' encoding='UTF-8'?><Error><Code>" + code + "</Code><Message>msg</Message>" + extra +
             "</Error>";
  return r;
}
}  // namespace

TEST(GcsClient, ErrorKinds) {
  struct Case { int status; const char* code; StoreErrorKind kind; } cases[] = {
      {404, "NoSuchBucket", StoreErrorKind::bucket_not_found},
      {404, "NoSuchKey", StoreErrorKind::not_found},
      {404, "", StoreErrorKind::not_found},
      {412, "PreconditionFailed", StoreErrorKind::precondition_failed},
      {412, "", StoreErrorKind::precondition_failed},
      {403, "SignatureDoesNotMatch", StoreErrorKind::credentials},
      {403, "InvalidAccessKeyId", StoreErrorKind::credentials},
      {403, "InvalidSecurity", StoreErrorKind::credentials},
      {403, "RequestTimeTooSkewed", StoreErrorKind::credentials},
      {401, "AuthenticationRequired", StoreErrorKind::credentials},
      {401, "", StoreErrorKind::credentials},
      {403, "AccessDenied", StoreErrorKind::access_denied},
      {403, "", StoreErrorKind::access_denied},
      {500, "InternalError", StoreErrorKind::transient},
      {503, "", StoreErrorKind::transient},
      {429, "SlowDown", StoreErrorKind::transient},
      {400, "InvalidArgument", StoreErrorKind::other},
  };
  for (const auto& c : cases) {
    auto e = gcs::gcs_error(answer(c.status, c.code), "GCS GET gs://b/k", false);
    EXPECT_EQ(e.kind, c.kind) << c.status << " " << c.code;
    EXPECT_EQ(e.message.rfind("GCS GET gs://b/k: ", 0), 0u) << e.message;
  }
}

TEST(GcsClient, MessagesSayWhatToFixAndNoMore) {
  auto sig = gcs::gcs_error(answer(403, "SignatureDoesNotMatch", "<StringToSign>AWS4-HMAC-SHA256\nsecret</StringToSign>"),
                            "GCS PUT gs://b/k", false);
  EXPECT_NE(sig.message.find("the HMAC secret does not match"), std::string::npos) << sig.message;
  EXPECT_EQ(sig.message.find("StringToSign"), std::string::npos) << sig.message;
  EXPECT_EQ(sig.message.find("AWS4-HMAC"), std::string::npos) << sig.message;
  auto bearer = gcs::gcs_error(answer(401, "AuthenticationRequired"), "GCS GET gs://b/k", true);
  EXPECT_NE(bearer.message.find("the OAuth2 bearer token was refused"), std::string::npos) << bearer.message;
  auto bucket = gcs::gcs_error(answer(404, "NoSuchBucket"), "GCS GET gs://nope/k", false);
  EXPECT_NE(bucket.message.find("the bucket does not exist"), std::string::npos) << bucket.message;
  // A code from the network reaches logs and metric labels: no control characters.
  auto evil = gcs::gcs_error(answer(400, "Bad\r\nX-Evil: 1"), "GCS GET gs://b/k", false);
  EXPECT_EQ(evil.code.find('\n'), std::string::npos);
  EXPECT_EQ(evil.message.find('\n'), std::string::npos);
}

TEST(GcsClient, GenerationPreconditions) {
  EXPECT_EQ(gcs::generation_match(WriteCondition::create_only()), "0");
  EXPECT_EQ(gcs::generation_match(WriteCondition::replace("1700000000123456")), "1700000000123456");
  EXPECT_EQ(gcs::generation_match(WriteCondition::unconditional()), "");
}

// An HMAC-key request as GCS's interoperability mode takes it: SigV4 with the
// credential scope <date>/auto/s3/aws4_request. The canonical request is
// written out by hand here; only the HMAC/SHA-256 primitives are shared.
TEST(GcsClient, HmacRequestIsSignedAsSigV4WithScopeAutoS3) {
  auto base = http::Url::parse("https://storage.googleapis.com");
  ASSERT_TRUE(base.ok());
  http::Headers extra{{"content-type", "application/json"}, {"x-goog-if-generation-match", "0"}};
  std::string target;
  const std::string body = "{}";
  auto h = gcs::hmac_headers("PUT", *base, "/bucket/holdfast/default/manifest x.json", body, extra, "GOOG1EXAMPLE",
                             "secret/with+chars", "20260102T030405Z", target);
  EXPECT_EQ(target, "/bucket/holdfast/default/manifest%20x.json");
  std::map<std::string, std::string> m(h.begin(), h.end());
  const std::string sha = aws::sha256_hex(body);
  EXPECT_EQ(m["X-Amz-Date"], "20260102T030405Z");
  EXPECT_EQ(m["X-Amz-Content-Sha256"], sha);
  EXPECT_EQ(m["x-goog-if-generation-match"], "0");
  const std::string canonical =
      "PUT\n/bucket/holdfast/default/manifest%20x.json\n\n"
      "content-type:application/json\nhost:storage.googleapis.com\nx-amz-content-sha256:" + sha +
      "\nx-amz-date:20260102T030405Z\nx-goog-if-generation-match:0\n\n"
      "content-type;host;x-amz-content-sha256;x-amz-date;x-goog-if-generation-match\n" + sha;
  const std::string to_sign = "AWS4-HMAC-SHA256\n20260102T030405Z\n20260102/auto/s3/aws4_request\n" +
                              aws::sha256_hex(canonical);
  std::string k = aws::hmac_sha256("AWS4secret/with+chars", "20260102");
  for (const char* part : {"auto", "s3", "aws4_request"}) k = aws::hmac_sha256(k, part);
  EXPECT_EQ(m["Authorization"],
            "AWS4-HMAC-SHA256 Credential=GOOG1EXAMPLE/20260102/auto/s3/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-goog-if-generation-match, Signature=" +
                aws::hex(aws::hmac_sha256(k, to_sign)));
}
