// GCS answers as store errors: the XML <Code>, the status, and messages that
// name the request and never echo a signature's details.
#include "cloud/gcs/gcs_client.h"

#include <gtest/gtest.h>

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
