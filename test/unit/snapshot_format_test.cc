#include "config/fallback/snapshot_format.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "cloud/aws/credentials.h"
#include "cloud/aws/sigv4.h"
#include "cloud/aws/xml.h"

using namespace holdfast;
using namespace holdfast::config::fallback;
namespace json = boost::json;

namespace {
Manifest sample(const std::string& rbody, const std::string& cbody) {
  Manifest m;
  m.gateway_group_id = "gg";
  m.revision = 42;
  m.created_at = 1700000000;
  m.heartbeat_at = 1700000100;
  m.producer = "host";
  m.resource = {"rb", resource_key("gg", aws::sha256_hex(rbody)), aws::sha256_hex(rbody), rbody.size()};
  m.config = {"cb", config_key("gg", aws::sha256_hex(cbody)), aws::sha256_hex(cbody), cbody.size()};
  return m;
}
}  // namespace

TEST(SnapshotFormat, ResourceObjectStripsTimestampsAndEmptySections) {
  auto doc = json::parse(R"({"routes":[{"id":"1","uri":"/a","create_time":1,"update_time":2}],"ssls":[]})").as_object();
  auto r = resource_object(doc);
  EXPECT_FALSE(r.contains("ssls"));
  EXPECT_FALSE(r.at("routes").as_array()[0].as_object().contains("create_time"));
  EXPECT_EQ(resource_count(r), 1u);
}

TEST(SnapshotFormat, ManifestRoundTripAndSignature) {
  std::string rb = R"({"routes":[{"id":"1","uri":"/a"}]})", cb = config_object(42, {"k1k1k1k1k1k1k1k1"}, true);
  Manifest m = sample(rb, cb);
  sign_manifest(m, "secret");
  auto parsed = parse_manifest(serialize_manifest(m));
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_EQ(parsed->revision, 42);
  EXPECT_TRUE(verify_manifest(*parsed, "gg", "secret").ok());
  EXPECT_FALSE(verify_manifest(*parsed, "other", "secret").ok());
  EXPECT_FALSE(verify_manifest(*parsed, "gg", "wrong").ok());
  Manifest tampered = *parsed;
  tampered.revision = 43;
  EXPECT_FALSE(verify_manifest(tampered, "gg", "secret").ok());
  Manifest unsigned_m = *parsed;
  unsigned_m.hmac.clear();
  EXPECT_FALSE(verify_manifest(unsigned_m, "gg", "secret").ok());
  EXPECT_TRUE(verify_manifest(unsigned_m, "gg", "").ok());
  auto loaded = verify_objects(*parsed, rb, cb);
  ASSERT_TRUE(loaded.ok()) << loaded.error();
  EXPECT_EQ(loaded->keyring, std::vector<std::string>{"k1k1k1k1k1k1k1k1"});
  EXPECT_FALSE(verify_objects(*parsed, rb + " ", cb).ok());
  EXPECT_FALSE(verify_objects(*parsed, rb, cb + " ").ok());
}

TEST(SnapshotFormat, RejectsMalformedManifests) {
  EXPECT_FALSE(parse_manifest("not json").ok());
  EXPECT_FALSE(parse_manifest(R"({"format":"other"})").ok());
  EXPECT_FALSE(parse_manifest(R"({"format":"holdfast-fallback","format_version":2})").ok());
  EXPECT_FALSE(parse_manifest(R"({"format":"holdfast-fallback","format_version":1,"revision":1})").ok());
}

TEST(SnapshotFormat, ObjectsMustHaveTheRightShape) {
  std::string rb = R"({"routes":{"id":"1"}})", cb = config_object(1, {}, true);
  Manifest m = sample(rb, cb);
  auto r = verify_objects(m, rb, cb);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("routes is not an array"), std::string::npos);
}

TEST(Aws, Iso8601AndXml) {
  EXPECT_EQ(aws::parse_iso8601("2026-01-02T03:04:05Z"), 1767323045);
  EXPECT_EQ(aws::parse_iso8601("2026-01-02T03:04:05.123Z"), 1767323045);
  EXPECT_EQ(aws::parse_iso8601("bad"), 0);
  EXPECT_EQ(aws::xml_text("<Error><Code>NoSuchKey</Code><Message>a &amp; b</Message></Error>", "Message"), "a & b");
  EXPECT_EQ(aws::xml_text("<a/>", "Code"), "");
}
