// hmac-auth's rewrite on requests built here, against consumers compiled
// into a snapshot as the proxy sees them: who gets in, APISIX's answers
// otherwise, and its schemas.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <boost/json.hpp>
#include <ctime>

#include "core/base64.h"
#include "plugins/plugin.h"
#include "snapshot/snapshot.h"

namespace {

using namespace holdfast;
namespace json = boost::json;

std::string http_now(long offset = 0) {
  std::time_t t = std::time(nullptr) + offset;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

std::string sign(const EVP_MD* md, std::string_view key, std::string_view msg) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(md, key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(msg.data()), msg.size(),
       mac, &len);
  return base64_encode(std::string_view(reinterpret_cast<const char*>(mac), len));
}

class HmacAuth : public ::testing::Test {
 protected:
  void SetUp() override {
    auto doc = json::parse(R"({"consumers":[
        {"username":"jack","plugins":{"hmac-auth":{"key_id":"jack-key","secret_key":"jack-secret"}}},
        {"id":"jack/credentials/c1","plugins":{"hmac-auth":{"key_id":"cred-key","secret_key":"cred-secret"}}},
        {"username":"anon"}]})");
    auto s = snapshot::compile_snapshot(doc, {});
    ASSERT_TRUE(s.ok()) << s.error();
    snap = *s;
  }

  // Runs the plugin configured with `conf` on GET /hello?x=1 with `headers`.
  plugins::Action run(const char* conf, std::vector<std::pair<std::string, std::string>> headers,
                      std::string_view body = {}) {
    held = std::move(headers);
    head = {};
    head.method = "GET";
    head.target = "/hello?x=1";
    head.path = "/hello";
    head.query = "x=1";
    for (const auto& [n, v] : held) head.headers.push_back({n, v});
    if (!body.empty()) {
      head.body = http::BodyKind::length;
      head.content_length = body.size();
    }
    c = std::make_unique<plugins::RequestCtx>();
    c->req = &head;
    c->consumers = &snap->consumers;
    body_view = body;
    if (!body.empty() && body.size() <= 1000) c->body = &body_view;
    auto p = plugins::find_plugin("hmac-auth")->create(json::parse(conf).as_object(), "test");
    EXPECT_TRUE(p.ok()) << p.error();
    plugin = *p;
    c->plugin = "hmac-auth";
    return plugin->rewrite(*c);
  }

  std::string authorization(std::string_view key_id, std::string_view secret, std::string_view date,
                            const EVP_MD* md = EVP_sha256(), std::string_view alg = "hmac-sha256") {
    std::string signing = std::string(key_id) + "\nGET /hello?x=1\ndate: " + std::string(date) + "\n";
    return "Signature keyId=\"" + std::string(key_id) + "\",algorithm=\"" + std::string(alg) +
           "\",headers=\"@request-target date\",signature=\"" + sign(md, secret, signing) + "\"";
  }

  std::string header_set(std::string_view name) const {
    for (const auto& e : c->req_set)
      if (e.name == name) return e.value;
    return "<unset>";
  }

  std::shared_ptr<snapshot::Snapshot> snap;
  std::vector<std::pair<std::string, std::string>> held;
  http::RequestHead head;
  std::unique_ptr<plugins::RequestCtx> c;
  std::string_view body_view;
  std::shared_ptr<const plugins::Plugin> plugin;
};

TEST_F(HmacAuth, ValidSignatureIdentifiesTheConsumerOrCredential) {
  std::string date = http_now();
  ASSERT_EQ(run("{}", {{"Date", date}, {"Authorization", authorization("jack-key", "jack-secret", date)}}),
            plugins::Action::next);
  ASSERT_TRUE(c->consumer);
  EXPECT_EQ(header_set("X-Consumer-Username"), "jack");
  ASSERT_EQ(run("{}", {{"Date", date}, {"Authorization", authorization("cred-key", "cred-secret", date)}}),
            plugins::Action::next);
  EXPECT_EQ(header_set("X-Credential-Identifier"), "c1");
  // sha1 and sha512 too.
  EXPECT_EQ(run("{}", {{"Date", date},
                       {"Authorization", authorization("jack-key", "jack-secret", date, EVP_sha512(), "hmac-sha512")}}),
            plugins::Action::next);
  EXPECT_EQ(run("{}", {{"Date", date},
                       {"Authorization", authorization("jack-key", "jack-secret", date, EVP_sha1(), "hmac-sha1")}}),
            plugins::Action::next);
}

TEST_F(HmacAuth, RejectsWithApisixAnswers) {
  const std::string date = http_now();
  const std::string quiet = "{\"message\":\"client request can't be validated\"}\n";
  auto expect_401 = [&](const char* conf, std::vector<std::pair<std::string, std::string>> h, const std::string& body) {
    EXPECT_EQ(run(conf, std::move(h)), plugins::Action::respond);
    EXPECT_EQ(c->resp_status, 401);
    EXPECT_EQ(c->resp_body, body);
    std::string realm;
    for (const auto& e : c->resp_headers)
      if (e.name == "WWW-Authenticate") realm = e.value;
    EXPECT_EQ(realm, "hmac realm=\"hmac\"");
  };
  expect_401("{}", {}, "{\"message\":\"client request can't be validated: missing Authorization header\"}\n");
  expect_401("{}", {{"Authorization", "Basic eDp5"}},
             "{\"message\":\"client request can't be validated: Authorization header does not start with 'Signature'\"}\n");
  expect_401("{}", {{"Date", date}, {"Authorization", authorization("jack-key", "wrong", date)}}, quiet);
  expect_401("{}", {{"Date", date}, {"Authorization", authorization("nobody", "jack-secret", date)}}, quiet);
  const std::string old = http_now(-301);
  expect_401("{}", {{"Date", old}, {"Authorization", authorization("jack-key", "jack-secret", old)}}, quiet);
  expect_401("{}", {{"Authorization", authorization("jack-key", "jack-secret", date)}}, quiet);  // no Date
  expect_401(R"({"allowed_algorithms":["hmac-sha512"]})",
             {{"Date", date}, {"Authorization", authorization("jack-key", "jack-secret", date)}}, quiet);
  expect_401(R"({"signed_headers":["date","x-custom"]})",
             {{"Date", date}, {"x-custom", "v"}, {"Authorization", authorization("jack-key", "jack-secret", date)}},
             quiet);
  // A changed signed header breaks the signature.
  expect_401("{}", {{"Date", http_now(-1)}, {"Authorization", authorization("jack-key", "jack-secret", date)}}, quiet);
  // Within a wider clock_skew the old date passes.
  EXPECT_EQ(run(R"({"clock_skew":400})", {{"Date", old}, {"Authorization", authorization("jack-key", "jack-secret", old)}}),
            plugins::Action::next);
}

TEST_F(HmacAuth, BodyDigest) {
  const std::string date = http_now();
  const std::string auth = authorization("jack-key", "jack-secret", date);
  const char* conf = R"({"validate_request_body":true,"max_req_body_size":1000})";
  // SHA-256("hello") in base64.
  const std::string good = "SHA-256=LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=";
  EXPECT_EQ(run(conf, {{"Date", date}, {"Digest", good}, {"Authorization", auth}}, "hello"), plugins::Action::next);
  EXPECT_EQ(run(conf, {{"Date", date}, {"Digest", good}, {"Authorization", auth}}, "hellO"), plugins::Action::respond);
  EXPECT_EQ(c->resp_status, 401);
  EXPECT_EQ(run(conf, {{"Date", date}, {"Authorization", auth}}, "hello"), plugins::Action::respond);
  EXPECT_EQ(c->resp_status, 401);
  // Not read by the proxy: larger than max_req_body_size.
  EXPECT_EQ(run(conf, {{"Date", date}, {"Digest", good}, {"Authorization", auth}}, std::string(1001, 'a')),
            plugins::Action::respond);
  EXPECT_EQ(c->resp_status, 413);
  EXPECT_EQ(c->resp_body, "{\"message\":\"request size 1001 is greater than the maximum size 1000 allowed\"}\n");
  // The plugin asks the proxy for the body only when it will check it.
  EXPECT_EQ(plugin->wants_request_body(*c), 1000u);
  run("{}", {{"Digest", good}});
  EXPECT_EQ(plugin->wants_request_body(*c), 0u);
  run(conf, {{"Date", date}});
  EXPECT_EQ(plugin->wants_request_body(*c), 0u);
}

TEST_F(HmacAuth, AnonymousConsumerAndHideCredentials) {
  const std::string date = http_now();
  EXPECT_EQ(run(R"({"anonymous_consumer":"anon"})", {}), plugins::Action::next);
  EXPECT_EQ(header_set("X-Consumer-Username"), "anon");
  EXPECT_EQ(run(R"({"anonymous_consumer":"ghost"})", {}), plugins::Action::respond);
  EXPECT_EQ(c->resp_body, "{\"message\":\"Invalid user authorization\"}\n");
  EXPECT_EQ(run("{}", {{"Date", date}, {"Authorization", authorization("jack-key", "jack-secret", date)}}),
            plugins::Action::next);
  EXPECT_TRUE(c->request_header("Authorization"));
  EXPECT_EQ(run(R"({"hide_credentials":true})",
                {{"Date", date}, {"Authorization", authorization("jack-key", "jack-secret", date)}}),
            plugins::Action::next);
  EXPECT_FALSE(c->request_header("Authorization"));
}

TEST(HmacAuthSchema, ApisixMessages) {
  const plugins::PluginDef* def = plugins::find_plugin("hmac-auth");
  ASSERT_TRUE(def);
  EXPECT_EQ(def->priority, 2530);
  auto err = [&](const char* conf) {
    auto r = def->create(json::parse(conf).as_object(), "t");
    return r.ok() ? std::string("ok") : r.error();
  };
  EXPECT_EQ(err("{}"), "ok");
  EXPECT_NE(err(R"({"clock_skew":0})"), "ok");
  EXPECT_NE(err(R"({"allowed_algorithms":[]})"), "ok");
  EXPECT_NE(err(R"({"allowed_algorithms":["md5"]})"), "ok");
  EXPECT_NE(err(R"({"signed_headers":[""]})"), "ok");
  EXPECT_NE(err(R"({"max_req_body_size":0})"), "ok");
  auto consumer = [&](const char* conf) {
    auto st = def->check_consumer(json::parse(conf).as_object());
    return st ? std::string("ok") : st.error();
  };
  EXPECT_EQ(consumer(R"({"key_id":"k"})"), "property \"secret_key\" is required");
  EXPECT_EQ(consumer(R"({"secret_key":"s"})"), "property \"key_id\" is required");
  EXPECT_EQ(consumer(("{\"key_id\":\"" + std::string(320, 'k') + "\",\"secret_key\":\"s\"}").c_str()),
            "property \"key_id\" validation failed: string too long, expected at most 256, got 320");
  EXPECT_EQ(consumer(R"({"key_id":"k","secret_key":"s"})"), "ok");
}

}  // namespace
