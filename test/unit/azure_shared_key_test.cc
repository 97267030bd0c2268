// Azure Shared Key: the string to sign as Microsoft's "Authorize with Shared
// Key" page constructs it (expected strings written by hand from that page's
// rules and examples), the Authorization header, and how Blob service error
// codes map to store error kinds.
#include <gtest/gtest.h>

#include "cloud/azure/blob_client.h"
#include "cloud/azure/shared_key.h"
#include "core/base64.h"

using namespace holdfast::azure;
using holdfast::cloud::StoreErrorKind;

namespace {
const char* kDate = "Sun, 11 Oct 2009 21:49:13 GMT";
}

// The page's Get Container Metadata example: twelve standard fields, all
// empty for a GET without a body, then the x-ms-* headers sorted, then the
// account, the path and the query parameters sorted by name.
TEST(AzureSharedKey, DocumentedGetContainerMetadata) {
  SharedKeyInput in;
  in.method = "GET";
  in.account = "myaccount";
  in.encoded_path = "/mycontainer";
  in.query = {{"restype", "container"}, {"comp", "metadata"}, {"timeout", "20"}};
  in.headers = {{"x-ms-version", "2009-09-19"}, {"x-ms-date", kDate}};
  EXPECT_EQ(string_to_sign(in),
            "GET\n"
            "\n"   // Content-Encoding
            "\n"   // Content-Language
            "\n"   // Content-Length
            "\n"   // Content-MD5
            "\n"   // Content-Type
            "\n"   // Date
            "\n"   // If-Modified-Since
            "\n"   // If-Match
            "\n"   // If-None-Match
            "\n"   // If-Unmodified-Since
            "\n"   // Range
            "x-ms-date:Sun, 11 Oct 2009 21:49:13 GMT\n"
            "x-ms-version:2009-09-19\n"
            "/myaccount/mycontainer\ncomp:metadata\nrestype:container\ntimeout:20");
}

// The page's List Blobs example: a parameter given several times is one
// line, its values sorted and joined with commas; names are lower-cased.
TEST(AzureSharedKey, DocumentedRepeatedQueryParameter) {
  SharedKeyInput in;
  in.method = "GET";
  in.account = "myaccount";
  in.encoded_path = "/mycontainer";
  in.query = {{"restype", "container"},  {"comp", "list"},     {"include", "snapshots"},
              {"include", "metadata"},   {"Include", "uncommittedblobs"}};
  in.headers = {{"x-ms-date", kDate}, {"x-ms-version", "2009-09-19"}};
  EXPECT_EQ(string_to_sign(in),
            "GET\n\n\n\n\n\n\n\n\n\n\n\n"
            "x-ms-date:Sun, 11 Oct 2009 21:49:13 GMT\nx-ms-version:2009-09-19\n"
            "/myaccount/mycontainer\ncomp:list\ninclude:metadata,snapshots,uncommittedblobs\nrestype:container");
}

// Holdfast's conditional Put Blob against an emulator: the standard headers
// go to their fixed places whatever their case or order, x-ms-* headers are
// lower-cased, sorted and their whitespace folded, and the account appears
// twice (once as the owner, once in the emulator's path).
TEST(AzureSharedKey, ConditionalPutOnEmulator) {
  SharedKeyInput in;
  in.method = "PUT";
  in.account = "devstoreaccount1";
  in.encoded_path = "/devstoreaccount1/fallback-cp-data/holdfast/default/manifest.json";
  in.headers = {{"Content-Type", "application/json"}, {"X-MS-Blob-Type", "BlockBlob"},
                {"If-Match", "\"0x8D0000000000001\""}, {"x-ms-meta-note", "  two   words  "},
                {"x-ms-version", "2021-08-06"}, {"x-ms-date", kDate}, {"Content-Length", "11"},
                {"If-None-Match", "*"}};
  EXPECT_EQ(string_to_sign(in),
            "PUT\n"
            "\n"                          // Content-Encoding
            "\n"                          // Content-Language
            "11\n"                        // Content-Length
            "\n"                          // Content-MD5
            "application/json\n"          // Content-Type
            "\n"                          // Date
            "\n"                          // If-Modified-Since
            "\"0x8D0000000000001\"\n"     // If-Match
            "*\n"                         // If-None-Match
            "\n"                          // If-Unmodified-Since
            "\n"                          // Range
            "x-ms-blob-type:BlockBlob\n"
            "x-ms-date:Sun, 11 Oct 2009 21:49:13 GMT\n"
            "x-ms-meta-note:two words\n"
            "x-ms-version:2021-08-06\n"
            "/devstoreaccount1/devstoreaccount1/fallback-cp-data/holdfast/default/manifest.json");
}

// Since version 2015-02-21 a Content-Length of zero signs as an empty line.
TEST(AzureSharedKey, ZeroContentLengthIsEmpty) {
  SharedKeyInput in;
  in.method = "PUT";
  in.account = "a";
  in.encoded_path = "/c/b";
  in.headers = {{"content-length", "0"}, {"x-ms-version", "2021-08-06"}};
  EXPECT_EQ(string_to_sign(in), "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-version:2021-08-06\n/a/c/b");
}

// HMAC-SHA256 with the decoded key, base64: the expected value computed
// independently (Python hmac/base64) with Azurite's well-known emulator key.
TEST(AzureSharedKey, AuthorizationHeader) {
  auto key = holdfast::base64_decode(
      "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==");
  ASSERT_TRUE(key);
  const std::string sts =
      "GET\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:Tue, 01 Dec 2026 22:00:00 GMT\nx-ms-version:2021-08-06\n"
      "/devstoreaccount1/devstoreaccount1/c/b";
  EXPECT_EQ(authorization("devstoreaccount1", *key, sts),
            "SharedKey devstoreaccount1:QnUZTXSjISKX0vJ3g7acKCGtEx/AByti7741piPlQi0=");
}

TEST(AzureSharedKey, Rfc1123Date) {
  const std::string d = rfc1123_now();
  ASSERT_EQ(d.size(), 29u) << d;  // "Tue, 01 Dec 2026 22:00:00 GMT"
  EXPECT_EQ(d.substr(3, 2), ", ");
  EXPECT_EQ(d.substr(26), "GMT");
}

TEST(AzureBlobErrors, CodesToKinds) {
  EXPECT_EQ(blob_error_kind(403, "AuthenticationFailed"), StoreErrorKind::credentials);
  EXPECT_EQ(blob_error_kind(403, "AuthorizationFailure"), StoreErrorKind::credentials);  // Azurite's wrong key
  EXPECT_EQ(blob_error_kind(403, "AuthorizationPermissionMismatch"), StoreErrorKind::access_denied);
  EXPECT_EQ(blob_error_kind(404, "ContainerNotFound"), StoreErrorKind::bucket_not_found);
  EXPECT_EQ(blob_error_kind(404, "BlobNotFound"), StoreErrorKind::not_found);
  EXPECT_EQ(blob_error_kind(409, "BlobAlreadyExists"), StoreErrorKind::precondition_failed);
  EXPECT_EQ(blob_error_kind(412, "ConditionNotMet"), StoreErrorKind::precondition_failed);
  EXPECT_EQ(blob_error_kind(503, "ServerBusy"), StoreErrorKind::transient);
  EXPECT_EQ(blob_error_kind(500, "InternalError"), StoreErrorKind::transient);
  EXPECT_EQ(blob_error_kind(400, "InvalidHeaderValue"), StoreErrorKind::other);
}

// Azure's answer to a skewed clock (Azurite never checks x-ms-date, so this
// is the only test of it): AuthenticationFailed whose detail names the date.
// A credentials error with a clock hint, one line, and none of the detail's
// text (which for a bad signature quotes the string to sign).
TEST(AzureBlobErrors, ClockSkewAndWrongKeyAreCredentialErrors) {
  holdfast::http::ClientResponse skew;
  skew.status = 403;
  skew.headers = {{"x-ms-error-code", "AuthenticationFailed"}};
  skew.body =
      "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to "
      "authenticate the request. Make sure the value of Authorization header is formed correctly including the "
      "signature.\nRequestId:3f1c\nTime:2026-12-02T11:00:00.0000000Z</Message><AuthenticationErrorDetail>Request date "
      "header too old: 'Wed, 02 Dec 2026 10:00:00 GMT'</AuthenticationErrorDetail></Error>";
  auto e = blob_error(skew, "Azure Blob GET http://x/c/b", "the account key or SAS token");
  EXPECT_EQ(e.kind, StoreErrorKind::credentials);
  EXPECT_EQ(e.code, "AuthenticationFailed");
  EXPECT_NE(e.message.find("check this host's clock"), std::string::npos) << e.message;
  EXPECT_EQ(e.message.find("10:00:00"), std::string::npos) << e.message;
  EXPECT_EQ(e.message.find('\n'), std::string::npos);

  holdfast::http::ClientResponse wrong = skew;  // a wrong key: same code, another detail, no clock hint
  wrong.body = "<Error><Code>AuthenticationFailed</Code><AuthenticationErrorDetail>The MAC signature found in the HTTP "
               "request 'abc=' is not the same as any computed signature. Server used following string to sign: "
               "'GET\n...'</AuthenticationErrorDetail></Error>";
  e = blob_error(wrong, "Azure Blob GET http://x/c/b", "the account key or SAS token");
  EXPECT_EQ(e.kind, StoreErrorKind::credentials);
  EXPECT_NE(e.message.find("the account key or SAS token was refused"), std::string::npos);
  EXPECT_EQ(e.message.find("clock"), std::string::npos) << e.message;
  EXPECT_EQ(e.message.find("abc="), std::string::npos) << e.message;
}
