#include "core/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include "core/yaml_json.h"

using namespace holdfast;

TEST(NodeConfig, Defaults) {
  auto c = parse_node_config("", "/etc/x");
  ASSERT_TRUE(c.ok()) << c.error();
  ASSERT_EQ(c->node_listen.size(), 1u);
  EXPECT_EQ(c->node_listen[0].port, 9080);
  EXPECT_EQ(c->router, RouterKind::radixtree_host_uri);
  EXPECT_EQ(c->role, "traditional");
}

TEST(NodeConfig, ListenForms) {
  auto a = parse_node_config("apisix: {node_listen: 8000}", ".");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->node_listen[0].port, 8000);
  auto b = parse_node_config("apisix: {node_listen: [8000, 8001]}", ".");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->node_listen.size(), 2u);
  auto c = parse_node_config("apisix: {node_listen: [{ip: 127.0.0.1, port: 8002}]}", ".");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->node_listen[0].ip, "127.0.0.1");
  EXPECT_EQ(c->node_listen[0].port, 8002);
}

TEST(NodeConfig, ErrorsNameTheKey) {
  struct Case {
    const char* yaml;
    const char* key;
  } cases[] = {
      {"apisix: {node_listen: [8000, {ip: x, port: 70000}]}", "apisix.node_listen[1].port"},
      {"apisix: {router: {http: bogus}}", "apisix.router.http"},
      {"nginx_config: {worker_processes: zero}", "nginx_config.worker_processes"},
      {"deployment: {role: boss}", "deployment.role"},
      {"deployment: {role: traditional, role_traditional: {config_provider: json}}",
       "deployment.role_traditional.config_provider"},
      {"holdfast: {keepalive_timeout: -1}", "holdfast.keepalive_timeout"},
      {"holdfast: {log_format: xml}", "holdfast.log_format"},
  };
  for (const auto& c : cases) {
    auto r = parse_node_config(c.yaml, ".");
    ASSERT_FALSE(r.ok()) << c.yaml;
    EXPECT_NE(r.error().find(c.key), std::string::npos) << r.error();
  }
}

TEST(NodeConfig, UnknownKeysWarn) {
  auto c = parse_node_config("apisix: {node_listen: 1, bogus: 1}\nweird: 2\ndeployment: {etcd: {host: [\"http://x:2379\"]}}", ".");
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c->warnings.size(), 2u);
  EXPECT_NE(c->warnings[0].find("apisix.bogus"), std::string::npos);
  EXPECT_NE(c->warnings[1].find("weird"), std::string::npos);
}

TEST(NodeConfig, WorkersAuto) {
  auto c = parse_node_config("nginx_config: {worker_processes: auto}", ".");
  ASSERT_TRUE(c.ok());
  EXPECT_GE(c->workers, 1);
}

TEST(Env, Substitution) {
  setenv("HF_TEST_PORT", "8123", 1);
  unsetenv("HF_TEST_UNSET");
  auto s = substitute_env("a: ${{HF_TEST_PORT}} b: ${{HF_TEST_UNSET:=7}}");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s, "a: 8123 b: 7");
  auto bad = substitute_env("${{HF_TEST_UNSET}}");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find("HF_TEST_UNSET"), std::string::npos);
}

TEST(Yaml, ScalarTyping) {
  auto v = yaml_to_json("a: 1\nb: '1'\nc: true\nd: 1.5\ne: ~\nf: text", budgets::document(0));
  ASSERT_TRUE(v.ok());
  auto& o = v->as_object();
  EXPECT_TRUE(o.at("a").is_int64());
  EXPECT_TRUE(o.at("b").is_string());
  EXPECT_TRUE(o.at("c").is_bool());
  EXPECT_TRUE(o.at("d").is_double());
  EXPECT_TRUE(o.at("e").is_null());
  EXPECT_TRUE(o.at("f").is_string());
}

TEST(NodeConfig, EtcdAndAdminSections) {
  auto c = parse_node_config(R"(
deployment:
  role: traditional
  etcd: {host: ["http://a:2379", "https://b:2379"], prefix: /gw/, timeout: 3, user: u, password: p,
         tls: {cert: /c.pem, key: /k.pem, verify: false, sni: etcd.local}}
  admin:
    admin_listen: {ip: 127.0.0.1, port: 9181}
    admin_key: [{name: admin, key: k1, role: admin}, {name: v, key: k2, role: viewer}]
    allow_admin: [10.0.0.0/8]
apisix:
  data_encryption: {keyring: ["0123456789abcdef"]}
)", ".");
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c->etcd.hosts.size(), 2u);
  EXPECT_EQ(c->etcd.prefix, "/gw");
  EXPECT_EQ(c->etcd.timeout, 3);
  EXPECT_FALSE(c->etcd.tls_verify);
  EXPECT_EQ(c->etcd.tls_sni, "etcd.local");
  EXPECT_EQ(c->admin.listen.port, 9181);
  ASSERT_EQ(c->admin.keys.size(), 2u);
  EXPECT_EQ(c->admin.keys[1].role, "viewer");
  EXPECT_EQ(c->admin.allow, std::vector<std::string>{"10.0.0.0/8"});
  EXPECT_EQ(c->keyring, std::vector<std::string>{"0123456789abcdef"});

  auto bad = parse_node_config("deployment: {etcd: {host: [\"etcd:2379\"]}}", ".");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find("deployment.etcd.host[0]"), std::string::npos);
  auto badkey = parse_node_config("apisix: {data_encryption: {keyring: [\"short-secret\"]}}", ".");
  ASSERT_FALSE(badkey.ok());
  EXPECT_EQ(badkey.error().find("short-secret"), std::string::npos);  // never echo a key
}

TEST(NodeConfig, EtcdCaFromApisixTrustedCertificate) {
  // APISIX's CA for etcd; deployment.etcd.tls.ca wins when both are set.
  auto c = parse_node_config("apisix: {ssl: {ssl_trusted_certificate: \"system, /ca.pem\"}}", ".");
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c->etcd.tls_ca, "system, /ca.pem");
  auto both = parse_node_config(
      "apisix: {ssl: {ssl_trusted_certificate: /a.pem}}\ndeployment: {etcd: {tls: {ca: /b.pem}}}", ".");
  ASSERT_TRUE(both.ok()) << both.error();
  EXPECT_EQ(both->etcd.tls_ca, "/b.pem");
}

TEST(NodeConfig, EnvValuesThatLookLikeNumbers) {
  setenv("HF_DASH", "-", 1);
  setenv("HF_DIGITS", "123456", 1);
  auto dash = parse_node_config("apisix: {node_listen: \"${{HF_DASH}}\"}", ".");
  ASSERT_FALSE(dash.ok());  // an error, not a crash
  EXPECT_NE(dash.error().find("apisix.node_listen"), std::string::npos);
  auto c = parse_node_config(R"(
deployment:
  fallback_cp:
    aws_s3: {resource_bucket: r, config_bucket: c, access_key: AKIA, secret_key: "${{HF_DIGITS}}"}
)", ".");
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c->fallback.secret_key, "123456");
}

TEST(NodeConfig, FallbackValidation) {
  struct Case { const char* yaml; const char* msg; } cases[] = {
      {"deployment: {fallback_cp: {interval: \"60\", aws_s3: {resource_bucket: r, config_bucket: c}}}", "deployment.fallback_cp.interval"},
      {"deployment: {fallback_cp: {aws_s3: {config_bucket: c}}}", "resource_bucket: required"},
      {"deployment: {fallback_cp: {aws_s3: {resource_bucket: r}}}", "config_bucket: required"},
      {"deployment: {fallback_cp: {aws_s3: {resource_bucket: r, config_bucket: c, access_key: a}}}", "secret_key: required"},
      {"deployment: {fallback_cp: {intervall: 5, aws_s3: {resource_bucket: r, config_bucket: c}}}", "fallback_cp.intervall: unknown key"},
      {"deployment: {fallback_cp: {mode: read-write, aws_s3: {resource_bucket: r, config_bucket: c}}}", "fallback_cp.mode"},
  };
  for (const auto& k : cases) {
    auto r = parse_node_config(k.yaml, ".");
    ASSERT_FALSE(r.ok()) << k.yaml;
    EXPECT_NE(r.error().find(k.msg), std::string::npos) << r.error();
  }
}

TEST(NodeConfig, FallbackAzureBlob) {
  setenv("HF_AZ_KEY", "RWJ5OHZkTTAyeE5PY3FGbA==", 1);
  auto c = parse_node_config(R"(
deployment:
  fallback_cp:
    mode: write
    azure_blob:
      account_name: holdfastacct
      account_key: "${{HF_AZ_KEY}}"
      resource_container: fallback-cp-data
      config_container: fallback-cp-config
      retry_policy: exponential
)", ".");
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_TRUE(c->fallback.enabled);
  EXPECT_EQ(c->fallback.stores, std::vector<std::string>{"azure_blob"});
  EXPECT_EQ(c->fallback.azure.account_name, "holdfastacct");
  EXPECT_EQ(c->fallback.azure.account_key, "RWJ5OHZkTTAyeE5PY3FGbA==");
  EXPECT_EQ(c->fallback.azure.resource_container, "fallback-cp-data");
  EXPECT_EQ(c->fallback.azure.config_container, "fallback-cp-config");
  EXPECT_EQ(c->fallback.azure.endpoint, "https://holdfastacct.blob.core.windows.net");
  // An unknown key warns by name; no warning ever carries the key.
  bool named = false;
  for (const auto& w : c->warnings) {
    named = named || w.find("deployment.fallback_cp.azure_blob.retry_policy") != std::string::npos;
    EXPECT_EQ(w.find("RWJ5OHZkTTAyeE5PY3FGbA=="), std::string::npos) << w;
  }
  EXPECT_TRUE(named);

  // An emulator endpoint with the account path; a SAS token loses its '?';
  // with both a key and a token the key wins and the token is named as ignored.
  auto e = parse_node_config(R"(
deployment:
  fallback_cp:
    azure_blob:
      account_name: devstoreaccount1
      sas_token: "?sv=2021-08-06&ss=b&sig=abc%2Bdef%3D"
      resource_container: data
      config_container: config
      endpoint: http://127.0.0.1:10000/devstoreaccount1/
)", ".");
  ASSERT_TRUE(e.ok()) << e.error();
  EXPECT_EQ(e->fallback.azure.sas_token, "sv=2021-08-06&ss=b&sig=abc%2Bdef%3D");
  EXPECT_EQ(e->fallback.azure.endpoint, "http://127.0.0.1:10000/devstoreaccount1");
  auto both = parse_node_config(
      "deployment: {fallback_cp: {azure_blob: {account_name: acct, account_key: a2V5, sas_token: \"sig=x\", "
      "resource_container: data, config_container: config}}}", ".");
  ASSERT_TRUE(both.ok()) << both.error();
  bool ignored = false;
  for (const auto& w : both->warnings) ignored = ignored || w.find("sas_token is ignored") != std::string::npos;
  EXPECT_TRUE(ignored);
}

// Several stores at once: all of them, in the order the document lists them
// (ties between equal revisions go to the first), and a warning without a
// signing key, since any one writable store could then override the others.
TEST(NodeConfig, FallbackSeveralStores) {
  auto c = parse_node_config(R"(
deployment:
  fallback_cp:
    azure_blob:
      account_name: holdfastacct
      account_key: a2V5
      resource_container: fallback-cp-data
      config_container: fallback-cp-config
    aws_s3:
      resource_bucket: r
      config_bucket: c
)", ".");
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c->fallback.stores, (std::vector<std::string>{"azure_blob", "aws_s3"}));
  EXPECT_EQ(c->fallback.resource_bucket, "r");
  EXPECT_EQ(c->fallback.azure.resource_container, "fallback-cp-data");
  auto warned = [](const NodeConfig& n) {
    for (const auto& w : n.warnings)
      if (w.find("2 stores without signing_key") != std::string::npos) return true;
    return false;
  };
  EXPECT_TRUE(warned(*c));

  auto s = parse_node_config(
      "deployment: {fallback_cp: {signing_key: k, aws_s3: {resource_bucket: r, config_bucket: c}, azure_blob: "
      "{account_name: acct, account_key: a2V5, resource_container: data, config_container: cfg}}}", ".");
  ASSERT_TRUE(s.ok()) << s.error();
  EXPECT_EQ(s->fallback.stores, (std::vector<std::string>{"aws_s3", "azure_blob"}));
  EXPECT_FALSE(warned(*s));
  auto one = parse_node_config("deployment: {fallback_cp: {aws_s3: {resource_bucket: r, config_bucket: c}}}", ".");
  ASSERT_TRUE(one.ok()) << one.error();
  EXPECT_EQ(one->fallback.stores, std::vector<std::string>{"aws_s3"});
  EXPECT_FALSE(warned(*one));
}

TEST(NodeConfig, FallbackAzureBlobValidation) {
  struct Case { const char* yaml; const char* msg; } cases[] = {
      {"deployment: {fallback_cp: {azure_blob: {account_key: a2V5, resource_container: data, config_container: cfg}}}",
       "azure_blob.account_name: required"},
      {"deployment: {fallback_cp: {azure_blob: {account_name: Bad_Name, account_key: a2V5, resource_container: data, "
       "config_container: cfg}}}", "azure_blob.account_name"},
      {"deployment: {fallback_cp: {azure_blob: {account_name: acct, account_key: a2V5, config_container: cfg}}}",
       "azure_blob.resource_container: required"},
      {"deployment: {fallback_cp: {azure_blob: {account_name: acct, account_key: a2V5, resource_container: data, "
       "config_container: bad--name}}}", "azure_blob.config_container"},
      {"deployment: {fallback_cp: {azure_blob: {account_name: acct, account_key: \"not base64!\", resource_container: "
       "data, config_container: cfg}}}", "azure_blob.account_key: not a base64"},
      {"deployment: {fallback_cp: {azure_blob: {account_name: acct, sas_token: \"sig=a b\", resource_container: data, "
       "config_container: cfg}}}", "azure_blob.sas_token"},
      {"deployment: {fallback_cp: {azure_blob: {account_name: acct, account_key: a2V5, resource_container: data, "
       "config_container: cfg, endpoint: \"ftp://x\"}}}", "azure_blob.endpoint"},
      // With several stores, each is checked as it would be alone.
      {"deployment: {fallback_cp: {aws_s3: {resource_bucket: r, config_bucket: c}, azure_blob: {account_name: acct, "
       "account_key: a2V5, resource_container: data, config_container: cfg, endpoint: \"ftp://x\"}}}",
       "azure_blob.endpoint"},
      {"deployment: {fallback_cp: {azure_blob: {account_name: acct, account_key: a2V5, resource_container: data, "
       "config_container: cfg}, aws_s3: {resource_bucket: r}}}", "aws_s3.config_bucket: required"},
      {"deployment: {fallback_cp: {azure_blob: {account_name: acct, account_key: a2V5, resource_container: data, "
       "config_container: cfg}, aws_s3: [r]}}", "fallback_cp.aws_s3: expected a mapping"},
  };
  for (const auto& k : cases) {
    auto r = parse_node_config(k.yaml, ".");
    ASSERT_FALSE(r.ok()) << k.yaml;
    EXPECT_NE(r.error().find(k.msg), std::string::npos) << r.error();
    EXPECT_EQ(r.error().find("not base64!"), std::string::npos) << "the key is never echoed: " << r.error();
  }
}

// No key and no SAS token: Entra ID bearer tokens (workload or managed
// identity), found at run time; over http:// that gets a warning.
TEST(NodeConfig, FallbackAzureBlobBearer) {
  auto r = parse_node_config(
      "deployment: {fallback_cp: {azure_blob: {account_name: acct, resource_container: data, config_container: cfg}}}",
      ".");
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_TRUE(r->fallback.azure.account_key.empty());
  EXPECT_EQ(r->fallback.azure.endpoint, "https://acct.blob.core.windows.net");
  for (const auto& w : r->warnings) EXPECT_EQ(w.find("in the clear"), std::string::npos) << w;
  auto h = parse_node_config(
      "deployment: {fallback_cp: {azure_blob: {account_name: acct, resource_container: data, config_container: cfg, "
      "endpoint: \"http://127.0.0.1:1/acct\"}}}",
      ".");
  ASSERT_TRUE(h.ok()) << h.error();
  bool warned = false;
  for (const auto& w : h->warnings) warned |= w.find("in the clear") != std::string::npos;
  EXPECT_TRUE(warned);
}

TEST(NodeConfig, LuaSharedDictSizes) {
  auto d = parse_node_config("", ".");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->lua_shared_dict.at("plugin-limit-count"), 10u << 20);  // APISIX's default
  EXPECT_EQ(d->lua_shared_dict.at("plugin-limit-req"), 10u << 20);
  EXPECT_EQ(d->lua_shared_dict.at("plugin-limit-conn"), 10u << 20);
  auto c = parse_node_config(
      "nginx_config: {http: {lua_shared_dict: {plugin-limit-count: 1m, plugin-limit-req: 512k, "
      "plugin-limit-conn: 1G, prometheus-metrics: 8192, my-dict: 5m, \"bad\\u0007name\": 1m}}}",
      ".");
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c->lua_shared_dict.at("plugin-limit-count"), 1u << 20);
  EXPECT_EQ(c->lua_shared_dict.at("plugin-limit-req"), 512u << 10);
  EXPECT_EQ(c->lua_shared_dict.at("plugin-limit-conn"), uint64_t{1} << 30);
  EXPECT_EQ(c->lua_shared_dict.at("prometheus-metrics"), 8192u);
  EXPECT_EQ(c->lua_shared_dict.count("my-dict"), 0u);
  ASSERT_EQ(c->warnings.size(), 2u);
  EXPECT_NE(c->warnings[0].find("unknown shared dict"), std::string::npos);
  // Names are shown, control characters escaped.
  bool named = false;
  for (const auto& w : c->warnings) {
    named = named || w.find("lua_shared_dict.my-dict") != std::string::npos;
    for (char ch : w) EXPECT_GE(static_cast<unsigned char>(ch), 0x20) << w;
  }
  EXPECT_TRUE(named);
  for (const char* bad : {"8191", "8k1", "10mb", "-1m", "1.5m", " 10m", "m", "", "99999999999999999999g"}) {
    auto r = parse_node_config(std::string("nginx_config: {http: {lua_shared_dict: {plugin-limit-count: \"") + bad +
                                   "\"}}}",
                               ".");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().find("nginx_config.http.lua_shared_dict.plugin-limit-count"), std::string::npos) << r.error();
  }
  EXPECT_FALSE(parse_node_config("nginx_config: {http: {lua_shared_dict: {plugin-limit-count: 8191}}}", ".").ok());
  EXPECT_FALSE(parse_node_config("nginx_config: {http: {lua_shared_dict: 10m}}", ".").ok());
}

TEST(NodeConfig, NginxHttpTimeoutsAndLimits) {
  auto d = parse_node_config("", ".");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->client_header_timeout, 60);
  EXPECT_EQ(d->send_timeout, 10);  // APISIX's default, not nginx's 60s
  EXPECT_EQ(d->worker_connections, 10620);
  EXPECT_EQ(d->limits.max_body_bytes, 0u);

  auto c = parse_node_config(
      "nginx_config:\n  event: {worker_connections: 512}\n  http:\n    client_header_timeout: 1m30s\n"
      "    client_body_timeout: 500ms\n    send_timeout: 7\n    keepalive_timeout: 2h\n    client_max_body_size: 2m\n",
      ".");
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c->client_header_timeout, 90);
  EXPECT_DOUBLE_EQ(c->client_body_timeout, 0.5);
  EXPECT_EQ(c->send_timeout, 7);
  EXPECT_EQ(c->keepalive_timeout, 7200);
  EXPECT_EQ(c->limits.max_body_bytes, 2u << 20);
  EXPECT_EQ(c->worker_connections, 512);
  EXPECT_TRUE(c->warnings.empty());

  // holdfast.* are aliases; nginx_config wins with a warning.
  auto a = parse_node_config("holdfast: {send_timeout: 3, client_body_timeout: 4}\n"
                             "nginx_config: {http: {send_timeout: 5s}}\n", ".");
  ASSERT_TRUE(a.ok()) << a.error();
  EXPECT_EQ(a->send_timeout, 5);
  EXPECT_EQ(a->client_body_timeout, 4);
  ASSERT_EQ(a->warnings.size(), 1u);
  EXPECT_NE(a->warnings[0].find("holdfast.send_timeout"), std::string::npos);

  for (const char* bad : {"nginx_config: {http: {send_timeout: 10x}}", "nginx_config: {http: {send_timeout: 0}}",
                          "nginx_config: {http: {client_max_body_size: 1.5m}}",
                          "nginx_config: {event: {worker_connections: 1}}"}) {
    auto r = parse_node_config(bad, ".");
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.error().find("nginx_config."), std::string::npos) << r.error();
    }
  }
  // Keys nobody reads are named in a warning, not ignored silently.
  auto u = parse_node_config("nginx_config: {http: {lua_code_cache: true}, event: {multi_accept: true}}", ".");
  ASSERT_TRUE(u.ok());
  ASSERT_EQ(u->warnings.size(), 2u);
  EXPECT_NE(u->warnings[0].find("nginx_config."), std::string::npos);
}

// Secrets from ${{ENV}} made only of digits stay strings, exactly as written.
TEST(NodeConfig, AllDigitSecretsFromEnv) {
  setenv("HF_ADMIN_KEY", "123456789", 1);
  setenv("HF_ETCD_PASSWORD", "000123", 1);
  setenv("HF_KEYRING", "1234567890123456", 1);
  auto c = parse_node_config(R"(
apisix:
  data_encryption: {keyring: ["${{HF_KEYRING}}"]}
deployment:
  etcd: {user: root, password: "${{HF_ETCD_PASSWORD}}"}
  admin:
    admin_key: [{name: admin, key: "${{HF_ADMIN_KEY}}", role: admin}]
)", ".");
  ASSERT_TRUE(c.ok()) << c.error();
  ASSERT_EQ(c->admin.keys.size(), 1u);
  EXPECT_EQ(c->admin.keys[0].key, "123456789");
  EXPECT_EQ(c->etcd.password, "000123");
  ASSERT_EQ(c->keyring.size(), 1u);
  EXPECT_EQ(c->keyring[0], "1234567890123456");
  // Numeric settings from the environment still become numbers.
  setenv("HF_PORT", "9081", 1);
  auto p = parse_node_config("apisix: {node_listen: \"${{HF_PORT}}\"}", ".");
  ASSERT_TRUE(p.ok()) << p.error();
  EXPECT_EQ(p->node_listen[0].port, 9081);
}

TEST(NodeConfig, SslDefaultsAsApisix) {
  auto c = parse_node_config("", ".");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->ssl.enable);
  ASSERT_EQ(c->ssl.listen.size(), 1u);
  EXPECT_EQ(c->ssl.listen[0].ip, "0.0.0.0");
  EXPECT_EQ(c->ssl.listen[0].port, 9443);
  EXPECT_EQ(c->ssl.protocols, (std::vector<std::string>{"TLSv1.2", "TLSv1.3"}));
  EXPECT_EQ(c->ssl.ciphers.rfind("ECDHE-ECDSA-AES128-GCM-SHA256:", 0), 0u);
  EXPECT_FALSE(c->ssl.session_tickets);
  EXPECT_EQ(c->ssl.fallback_sni, "");
  EXPECT_EQ(c->ssl.trusted_certificate, "system");
  EXPECT_TRUE(c->warnings.empty());
}

TEST(NodeConfig, SslSettings) {
  auto c = parse_node_config(R"(
apisix:
  ssl:
    enable: false
    listen: [{port: 8443}, {ip: 127.0.0.1, port: 9444, enable_http3: false}, {ip: "::1"}]
    ssl_protocols: "TLSv1.3  TLSv1.2 TLSv1.3"
    ssl_ciphers: ECDHE-RSA-AES128-GCM-SHA256
    ssl_session_tickets: true
    fallback_sni: Default.Example.COM.
    ssl_trusted_certificate: /etc/ssl/ca.pem
)", ".");
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_FALSE(c->ssl.enable);
  ASSERT_EQ(c->ssl.listen.size(), 3u);
  EXPECT_EQ(c->ssl.listen[0].ip, "0.0.0.0");
  EXPECT_EQ(c->ssl.listen[0].port, 8443);
  EXPECT_EQ(c->ssl.listen[1].ip, "127.0.0.1");
  EXPECT_EQ(c->ssl.listen[1].port, 9444);
  EXPECT_EQ(c->ssl.listen[2].ip, "::1");
  EXPECT_EQ(c->ssl.listen[2].port, 9443);  // APISIX's default port
  EXPECT_EQ(c->ssl.protocols, (std::vector<std::string>{"TLSv1.3", "TLSv1.2"}));
  EXPECT_EQ(c->ssl.ciphers, "ECDHE-RSA-AES128-GCM-SHA256");
  EXPECT_TRUE(c->ssl.session_tickets);
  EXPECT_EQ(c->ssl.fallback_sni, "default.example.com");
  EXPECT_EQ(c->ssl.trusted_certificate, "/etc/ssl/ca.pem");
  EXPECT_TRUE(c->warnings.empty()) << c->warnings[0];
}

TEST(NodeConfig, RedirectHttpsPort) {
  // The first TLS listener's port, unless plugin_attr.redirect.https_port.
  auto c = parse_node_config("apisix:\n  ssl:\n    listen: [{port: 8443}, {port: 9444}]\n", ".");
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c->redirect_https_port, 8443);
  c = parse_node_config("apisix:\n  ssl:\n    enable: false\n", ".");
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c->redirect_https_port, 0);
  c = parse_node_config("plugin_attr:\n  redirect:\n    https_port: 443\n", ".");
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c->redirect_https_port, 443);
  EXPECT_FALSE(parse_node_config("plugin_attr:\n  redirect:\n    https_port: 70000\n", ".").ok());
}

TEST(NodeConfig, SslUnsupportedKeysWarnByName) {
  auto c = parse_node_config(R"(
apisix:
  ssl:
    listen: [{port: 9443, enable_http3: true, backlog: 5}]
    ssl_protocols: TLSv1 TLSv1.1 TLSv1.2
    ssl_cert: /x.crt
    ssl_cert_key: /x.key
    key_encrypt_salt: edd1c9f0985e76a2
    bogus: 1
)", ".");
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c->ssl.protocols, (std::vector<std::string>{"TLSv1.1", "TLSv1.2"}));
  std::string all;
  for (const auto& w : c->warnings) all += w + "\n";
  for (const char* key : {"apisix.ssl.listen[0].enable_http3", "apisix.ssl.listen[0].backlog",
                          "apisix.ssl.ssl_protocols: TLSv1 is not supported", "apisix.ssl.ssl_cert and ssl_cert_key",
                          "apisix.ssl.key_encrypt_salt", "apisix.ssl.bogus",
                          "TLSv1.1 lowers OpenSSL's security level to 0"})
    EXPECT_NE(all.find(key), std::string::npos) << key << " in:\n" << all;
  EXPECT_EQ(c->warnings.size(), 7u) << all;
}

TEST(NodeConfig, SslErrorsNameTheKey) {
  struct Case {
    const char* yaml;
    const char* key;
  } cases[] = {
      {"apisix: {ssl: {enable: 1}}", "apisix.ssl.enable"},
      {"apisix: {ssl: {listen: 9443}}", "apisix.ssl.listen"},
      {"apisix: {ssl: {listen: [{port: 0}]}}", "apisix.ssl.listen[0].port"},
      {"apisix: {ssl: {listen: [{ip: localhost, port: 1}]}}", "apisix.ssl.listen[0].ip"},
      {"apisix: {ssl: {listen: [{port: 1, enable_http2: 1}]}}", "apisix.ssl.listen[0].enable_http2"},
      {"apisix: {ssl: {ssl_protocols: TLSv1.4}}", "apisix.ssl.ssl_protocols: unknown protocol"},
      {"apisix: {ssl: {ssl_protocols: SSLv3}}", "apisix.ssl.ssl_protocols: no supported protocol"},
      {"apisix: {ssl: {ssl_protocols: [TLSv1.2]}}", "apisix.ssl.ssl_protocols"},
      {"apisix: {ssl: {ssl_ciphers: \"\"}}", "apisix.ssl.ssl_ciphers"},
      {"apisix: {ssl: {ssl_session_tickets: yes please}}", "apisix.ssl.ssl_session_tickets"},
      {"apisix: {ssl: {fallback_sni: \"a b\"}}", "apisix.ssl.fallback_sni"},
      {"apisix: {ssl: {fallback_sni: \".\"}}", "apisix.ssl.fallback_sni"},
  };
  for (const auto& c : cases) {
    auto r = parse_node_config(c.yaml, ".");
    ASSERT_FALSE(r.ok()) << c.yaml;
    EXPECT_NE(r.error().find(c.key), std::string::npos) << r.error();
  }
}

TEST(NodeConfig, Http2) {
  auto d = parse_node_config("", ".");
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->http2.enable);  // APISIX 3.9+'s default
  EXPECT_EQ(d->http2.max_concurrent_streams, 128u);
  EXPECT_EQ(d->http2.max_requests, 1000u);
  auto c = parse_node_config(
      "apisix: {enable_http2: false, ssl: {listen: [{port: 9443, enable_http2: true}]}}\n"
      "holdfast: {http2: {max_concurrent_streams: 4, max_requests: 7, max_header_list_size: 4096,"
      " hpack_table_size: 0, control_frame_rate: 50}}",
      ".");
  ASSERT_TRUE(c) << c.error();
  EXPECT_FALSE(c->http2.enable);
  EXPECT_EQ(c->http2.max_concurrent_streams, 4u);
  EXPECT_EQ(c->http2.max_requests, 7u);
  EXPECT_EQ(c->http2.max_header_list_size, 4096u);
  EXPECT_EQ(c->http2.hpack_table_size, 0u);
  EXPECT_EQ(c->http2.control_frame_rate, 50u);
  // The per-listener key (removed in APISIX 3.9) is accepted and named.
  bool named = false;
  for (const auto& w : c->warnings)
    if (w.find("apisix.ssl.listen[0].enable_http2 is deprecated") != std::string::npos) named = true;
  EXPECT_TRUE(named);
  for (const char* bad : {"holdfast: {http2: {max_concurrent_streams: 0}}", "holdfast: {http2: {max_requests: x}}",
                          "holdfast: {http2: {max_header_list_size: 10}}", "apisix: {enable_http2: 1}"}) {
    auto r = parse_node_config(bad, ".");
    EXPECT_FALSE(r) << bad;
  }
}

TEST(NodeConfig, FallbackGcs) {
  setenv("HF_GCS_SECRET", "bGVhdmVtZWFsb25lc2VjcmV0", 1);
  auto c = parse_node_config(R"(
deployment:
  fallback_cp:
    gcs:
      resource_bucket: fallback-cp-data
      config_bucket: fallback_cp.config
      hmac_access_id: GOOG1EXAMPLEACCESSID
      hmac_secret: "${{HF_GCS_SECRET}}"
      storage_class: nearline
)", ".");
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c->fallback.stores, std::vector<std::string>{"gcs"});
  EXPECT_EQ(c->fallback.gcs.resource_bucket, "fallback-cp-data");
  EXPECT_EQ(c->fallback.gcs.config_bucket, "fallback_cp.config");
  EXPECT_EQ(c->fallback.gcs.endpoint, "https://storage.googleapis.com");
  EXPECT_EQ(c->fallback.gcs.hmac_secret, "bGVhdmVtZWFsb25lc2VjcmV0");
  bool named = false;
  for (const auto& w : c->warnings) {
    named = named || w.find("deployment.fallback_cp.gcs.storage_class") != std::string::npos;
    EXPECT_EQ(w.find("bGVhdmVtZWFsb25lc2VjcmV0"), std::string::npos) << w;
  }
  EXPECT_TRUE(named);

  auto sa = parse_node_config(
      "deployment: {fallback_cp: {gcs: {resource_bucket: data, config_bucket: cfg, credentials_file: /k.json, "
      "endpoint: \"http://127.0.0.1:9000/\"}, aws_s3: {resource_bucket: r, config_bucket: c}}}", ".");
  ASSERT_TRUE(sa.ok()) << sa.error();
  EXPECT_EQ(sa->fallback.stores, (std::vector<std::string>{"gcs", "aws_s3"}));
  EXPECT_EQ(sa->fallback.gcs.credentials_file, "/k.json");
  EXPECT_EQ(sa->fallback.gcs.endpoint, "http://127.0.0.1:9000");
  bool clear = false;
  for (const auto& w : sa->warnings) clear = clear || w.find("gcs.endpoint is http://") != std::string::npos;
  EXPECT_TRUE(clear);

  struct Case { const char* yaml; const char* msg; } cases[] = {
      {"deployment: {fallback_cp: {gcs: {config_bucket: cfg}}}", "gcs.resource_bucket: required"},
      {"deployment: {fallback_cp: {gcs: {resource_bucket: Data, config_bucket: cfg}}}", "is not a bucket name"},
      {"deployment: {fallback_cp: {gcs: {resource_bucket: data, config_bucket: -cfg}}}", "gcs.config_bucket"},
      {"deployment: {fallback_cp: {gcs: {resource_bucket: data, config_bucket: cfg, hmac_secret: s3cr3t}}}",
       "gcs.hmac_access_id: required"},
      {"deployment: {fallback_cp: {gcs: {resource_bucket: data, config_bucket: cfg, hmac_access_id: a, "
       "hmac_secret: \"bad secret\"}}}", "gcs.hmac_secret: a character"},
      {"deployment: {fallback_cp: {gcs: {resource_bucket: data, config_bucket: cfg, endpoint: storage.googleapis.com}}}",
       "gcs.endpoint: must be"},
  };
  for (const auto& k : cases) {
    auto r = parse_node_config(k.yaml, ".");
    ASSERT_FALSE(r.ok()) << k.yaml;
    EXPECT_NE(r.error().find(k.msg), std::string::npos) << r.error();
    EXPECT_EQ(r.error().find("s3cr3t"), std::string::npos) << r.error();
    EXPECT_EQ(r.error().find("bad secret"), std::string::npos) << r.error();
  }
}
