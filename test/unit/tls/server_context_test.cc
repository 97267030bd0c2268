// The listener's OpenSSL glue (src/tls/server_context.h), through real
// handshakes between two SSL objects over an in-memory BIO pair: selection
// by SNI, ECDSA or RSA by the client's signature algorithms, the chain,
// protocol limits, aborted handshakes.
#include "tls/server_context.h"

#include <gtest/gtest.h>
#include <optional>
#include <openssl/err.h>

#include <boost/json.hpp>

#include "test_pki.h"

namespace json = boost::json;
using namespace holdfast;
using namespace holdfast::tls;
using holdfast::tls::test::Issued;
using holdfast::tls::test::KeyForm;
using holdfast::tls::test::Pki;

namespace {

struct Fixture {
  Pki pki;
  Issued rsa = pki.leaf("RSA", {"dual.example.com", "*.wild.example.com"});
  Issued ec = pki.leaf("EC", {"dual.example.com", "*.wild.example.com"});
  Issued other = pki.leaf("EC", {"other.example.com"});
};
const Fixture& fx() {
  static Fixture f;
  return f;
}

// One object serving ECDSA and RSA for dual.example.com and *.wild.example.com.
json::object dual_object(const std::string& id = "dual") {
  const auto& f = fx();
  json::object o;
  o["id"] = id;
  o["snis"] = json::array{"dual.example.com", "*.wild.example.com"};
  o["cert"] = f.pki.chain_pem(f.ec);
  o["key"] = f.ec.key_pem(KeyForm::traditional);
  o["certs"] = json::array{json::string(f.pki.chain_pem(f.rsa))};
  o["keys"] = json::array{json::string(f.rsa.key_pem(KeyForm::traditional))};
  return o;
}

json::object single_object(const std::string& id, const std::string& sni, const Issued& c) {
  json::object o;
  o["id"] = id;
  o["sni"] = sni;
  o["cert"] = fx().pki.chain_pem(c);
  o["key"] = c.key_pem();
  return o;
}

// Client settings; with() fills the fields a test names (designated
// initializers would warn about the others under -Wextra).
struct ClientOptions {
  std::string sni;             // "" = send none
  std::string sigalgs;         // "" = OpenSSL's defaults
  std::string ciphers;         // TLS <= 1.2 cipher list; "" = defaults
  int min_version = 0, max_version = 0;
  bool verify = false;         // verify against the test root
  int security_level = -1;     // -1 = default
  SSL_SESSION* session = nullptr;  // offered for resumption
};
ClientOptions sni(std::string name) {
  ClientOptions o;
  o.sni = std::move(name);
  return o;
}
ClientOptions versions(ClientOptions o, int min, int max) {
  o.min_version = min;
  o.max_version = max;
  return o;
}
ClientOptions verified(ClientOptions o) {
  o.verify = true;
  return o;
}

struct Outcome {
  bool ok = false;
  std::string peer_key_type;   // of the certificate the server sent
  int peer_chain_len = 0;      // certificates the server sent
  int version = 0;
  long verify_result = -1;
  std::optional<Selection> selection;  // a copy: the server SSL is gone when run() returns
  bool reused = false;
  std::shared_ptr<SSL_SESSION> session;  // the client's, tickets (TLS 1.3: sent after the handshake) read
};

// Runs one handshake between a client and a server SSL over a BIO pair.
struct Handshake {
  SslCtxPtr client_ctx{SSL_CTX_new(TLS_client_method())};
  SslPtr client, server;

  Outcome run(const ServerContext& sc, std::shared_ptr<const CertTable> table, const ClientOptions& co) {
    SSL_CTX* cctx = client_ctx.get();
    if (co.security_level >= 0) SSL_CTX_set_security_level(cctx, co.security_level);
    if (co.min_version) SSL_CTX_set_min_proto_version(cctx, co.min_version);
    if (co.max_version) SSL_CTX_set_max_proto_version(cctx, co.max_version);
    if (!co.sigalgs.empty()) {
      EXPECT_EQ(SSL_CTX_set1_sigalgs_list(cctx, co.sigalgs.c_str()), 1);
    }
    if (!co.ciphers.empty()) {
      EXPECT_EQ(SSL_CTX_set_cipher_list(cctx, co.ciphers.c_str()), 1);
    }
    if (co.verify) {
      X509_STORE_add_cert(SSL_CTX_get_cert_store(cctx), fx().pki.root.cert.get());
      SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, nullptr);
    }
    client.reset(SSL_new(cctx));
    server.reset(SSL_new(sc.native()));
    EXPECT_TRUE(attach_table(server.get(), std::move(table)));
    if (!co.sni.empty()) SSL_set_tlsext_host_name(client.get(), co.sni.c_str());
    if (co.verify && !co.sni.empty()) SSL_set1_host(client.get(), co.sni.c_str());
    if (co.session) SSL_set_session(client.get(), co.session);
    BIO *cb = nullptr, *sb = nullptr;
    BIO_new_bio_pair(&cb, 0, &sb, 0);
    SSL_set_bio(client.get(), cb, cb);
    SSL_set_bio(server.get(), sb, sb);
    SSL_set_connect_state(client.get());
    SSL_set_accept_state(server.get());
    Outcome out;
    bool cdone = false, sdone = false, failed = false;
    for (int i = 0; i < 100 && !(cdone && sdone) && !failed; ++i) {
      if (!cdone) {
        int r = SSL_do_handshake(client.get());
        if (r == 1) {
          cdone = true;
        } else if (SSL_get_error(client.get(), r) != SSL_ERROR_WANT_READ) {
          failed = true;
        }
      }
      if (!sdone && !failed) {
        int r = SSL_do_handshake(server.get());
        if (r == 1) {
          sdone = true;
        } else if (SSL_get_error(server.get(), r) != SSL_ERROR_WANT_READ) {
          failed = true;
        }
      }
    }
    ERR_clear_error();
    out.ok = cdone && sdone;
    if (const Selection* sel = selection(server.get())) out.selection = *sel;
    if (out.ok) {
      X509* peer = SSL_get0_peer_certificate(client.get());
      const char* t = peer ? EVP_PKEY_get0_type_name(X509_get0_pubkey(peer)) : nullptr;
      out.peer_key_type = t ? t : "";
      STACK_OF(X509)* chain = SSL_get_peer_cert_chain(client.get());
      out.peer_chain_len = chain ? sk_X509_num(chain) : 0;
      out.version = SSL_version(client.get());
      out.verify_result = SSL_get_verify_result(client.get());
      out.reused = SSL_session_reused(client.get()) == 1;
      char byte;
      SSL_read(client.get(), &byte, 1);  // reads TLS 1.3 NewSessionTickets, then wants more
      ERR_clear_error();
      out.session.reset(SSL_get1_session(client.get()), SSL_SESSION_free);
      // Both ends close cleanly (as TlsStream::close does): freeing an SSL
      // otherwise marks its session not resumable.
      SSL_set_shutdown(client.get(), SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
      SSL_set_shutdown(server.get(), SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    }
    return out;
  }
};

std::unique_ptr<ServerContext> context(SslConfig cfg = {}) {
  auto sc = ServerContext::create(cfg);
  EXPECT_TRUE(sc.ok()) << sc.error();
  return std::move(*sc);
}

Outcome handshake(const ServerContext& sc, std::shared_ptr<const CertTable> table, const ClientOptions& co) {
  Handshake h;
  return h.run(sc, std::move(table), co);
}

std::shared_ptr<const CertTable> table_of(json::array a) {
  auto t = CertTable::build(&a);
  EXPECT_TRUE(t->problems().empty()) << t->problems()[0].reason;
  return t;
}

}  // namespace

TEST(TlsServer, EcdsaOrRsaByTheClientsSignatureAlgorithms) {
  auto sc = context();
  auto table = table_of(json::array{dual_object()});
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    SCOPED_TRACE(version);
    ClientOptions ec_only = verified(versions(sni("dual.example.com"), version, version));
    ec_only.sigalgs = "ECDSA+SHA256:ECDSA+SHA384";
    auto a = handshake(*sc, table, ec_only);
    ASSERT_TRUE(a.ok);
    EXPECT_EQ(a.peer_key_type, "EC");
    EXPECT_EQ(a.version, version);
    ClientOptions rsa_only = verified(versions(sni("dual.example.com"), version, version));
    rsa_only.sigalgs = "rsa_pss_rsae_sha256:RSA+SHA256";
    auto b = handshake(*sc, table, rsa_only);
    ASSERT_TRUE(b.ok);
    EXPECT_EQ(b.peer_key_type, "RSA");
    // The intermediate goes with the leaf: the client verifies against the root alone.
    EXPECT_EQ(b.verify_result, X509_V_OK);
    EXPECT_EQ(b.peer_chain_len, 2);
  }
  // A client that takes either gets the server's preference (ECDSA first).
  auto c = handshake(*sc, table, verified(sni("dual.example.com")));
  ASSERT_TRUE(c.ok);
  EXPECT_EQ(c.peer_key_type, "EC");
}

TEST(TlsServer, SelectionBySni) {
  auto sc = context();
  auto table = table_of(json::array{dual_object(), single_object("other", "other.example.com", fx().other)});
  auto a = handshake(*sc, table, sni("OTHER.example.com."));
  ASSERT_TRUE(a.ok);
  ASSERT_TRUE(a.selection.has_value());
  EXPECT_EQ(a.selection->object->id, "other");
  EXPECT_EQ(a.selection->server_name, "other.example.com");
  EXPECT_FALSE(a.selection->fallback);
  auto b = handshake(*sc, table, verified(sni("x.wild.example.com")));
  ASSERT_TRUE(b.ok);
  EXPECT_EQ(b.selection->object->id, "dual");
  EXPECT_EQ(b.verify_result, X509_V_OK);
  // One label too many for the wildcard: no certificate, the handshake aborts.
  auto c = handshake(*sc, table, sni("y.x.wild.example.com"));
  EXPECT_FALSE(c.ok);
  EXPECT_FALSE(c.selection.has_value());
}

TEST(TlsServer, UnknownSniAborts) {
  SslConfig cfg;
  cfg.fallback_sni = "other.example.com";
  auto sc = context(cfg);
  auto table = table_of(json::array{single_object("other", "other.example.com", fx().other)});
  // fallback_sni stands in for a missing SNI only, never for an unknown one.
  auto a = handshake(*sc, table, sni("unknown.example.com"));
  EXPECT_FALSE(a.ok);
  EXPECT_FALSE(a.selection.has_value());
  auto b = handshake(*sc, table, sni(""));
  ASSERT_TRUE(b.ok);
  EXPECT_EQ(b.selection->object->id, "other");
  EXPECT_TRUE(b.selection->fallback);
}

TEST(TlsServer, NoSniWithoutFallbackAborts) {
  auto sc = context();
  auto table = table_of(json::array{single_object("other", "other.example.com", fx().other)});
  EXPECT_FALSE(handshake(*sc, table, sni("")).ok);
  // A `*` object does not stand in for a missing SNI either.
  auto any = table_of(json::array{single_object("any", "*", fx().other)});
  EXPECT_FALSE(handshake(*sc, any, sni("")).ok);
  EXPECT_TRUE(handshake(*sc, any, sni("whatever.test")).ok);
}

TEST(TlsServer, StatusZeroObjectsAbort) {
  auto sc = context();
  json::object off = single_object("off", "other.example.com", fx().other);
  off["status"] = 0;
  auto table = table_of(json::array{off});
  EXPECT_FALSE(handshake(*sc, table, sni("other.example.com")).ok);
}

TEST(TlsServer, ProtocolLimits) {
  auto sc = context();  // listener: TLSv1.2 TLSv1.3
  json::object only13 = single_object("13", "other.example.com", fx().other);
  only13["ssl_protocols"] = json::array{"TLSv1.3"};
  auto table = table_of(json::array{only13, dual_object()});
  // The object's list replaces the listener's.
  EXPECT_FALSE(handshake(*sc, table, versions(sni("other.example.com"), 0, TLS1_2_VERSION)).ok);
  auto a = handshake(*sc, table, sni("other.example.com"));
  ASSERT_TRUE(a.ok);
  EXPECT_EQ(a.version, TLS1_3_VERSION);
  // An object without ssl_protocols has the listener's.
  auto b = handshake(*sc, table, versions(sni("dual.example.com"), 0, TLS1_2_VERSION));
  ASSERT_TRUE(b.ok);
  EXPECT_EQ(b.version, TLS1_2_VERSION);

  SslConfig only12;
  only12.protocols = {"TLSv1.2"};
  auto sc12 = context(only12);
  auto c = handshake(*sc12, table, sni("dual.example.com"));
  ASSERT_TRUE(c.ok);
  EXPECT_EQ(c.version, TLS1_2_VERSION);
  // ... while the TLSv1.3-only object still speaks TLSv1.3 on that listener.
  auto d = handshake(*sc12, table, sni("other.example.com"));
  ASSERT_TRUE(d.ok);
  EXPECT_EQ(d.version, TLS1_3_VERSION);
}

TEST(TlsServer, Tls11OnlyForObjectsThatAskForIt) {
  // TLSv1.1 needs a cipher it can use (the default ssl_ciphers are all
  // TLSv1.2 AEADs) and security level 0 on both sides in OpenSSL 3.
  SslConfig cfg;
  cfg.ciphers += ":ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA";
  auto sc = context(cfg);
  json::object old = dual_object("old");
  old["snis"] = json::array{"old.example.com"};
  old["ssl_protocols"] = json::array{"TLSv1.1", "TLSv1.2"};
  json::object modern = dual_object("modern");
  modern["snis"] = json::array{"modern.example.com"};
  auto t = table_of(json::array{old, modern});
  ClientOptions tls11 = versions(sni("old.example.com"), TLS1_1_VERSION, TLS1_1_VERSION);
  tls11.ciphers = "ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA@SECLEVEL=0";
  tls11.security_level = 0;
  auto a = handshake(*sc, t, tls11);
  ASSERT_TRUE(a.ok);
  EXPECT_EQ(a.version, TLS1_1_VERSION);
  tls11.sni = "modern.example.com";
  EXPECT_FALSE(handshake(*sc, t, tls11).ok);
}

TEST(TlsServer, ANewTableAppliesToTheNextHandshake) {
  auto sc = context();
  auto before = table_of(json::array{single_object("v1", "other.example.com", fx().other)});
  auto after = table_of(json::array{dual_object("v2")});
  // A connection keeps the table attached at accept time, even once the
  // listener has moved on (the test drops its own reference).
  Handshake h;
  auto a = h.run(*sc, before, sni("other.example.com"));
  before.reset();
  ASSERT_TRUE(a.ok);
  EXPECT_EQ(a.selection->object->id, "v1");
  EXPECT_FALSE(handshake(*sc, after, sni("other.example.com")).ok);
  EXPECT_TRUE(handshake(*sc, after, sni("dual.example.com")).ok);
  EXPECT_EQ(selection(h.server.get())->object->id, "v1");
}

TEST(TlsServer, ContextSettings) {
  auto sc = context();
  EXPECT_NE(SSL_CTX_get_options(sc->native()) & SSL_OP_NO_TICKET, 0u);
  EXPECT_EQ(sc->policy().protocols, kTls12 | kTls13);
  SslConfig tickets;
  tickets.session_tickets = true;
  tickets.fallback_sni = "Example.COM.";
  auto st = context(tickets);
  EXPECT_EQ(SSL_CTX_get_options(st->native()) & SSL_OP_NO_TICKET, 0u);
  EXPECT_EQ(st->policy().fallback_sni, "example.com");
  SslConfig bad;
  bad.ciphers = "NO-SUCH-CIPHER";
  auto r = ServerContext::create(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("apisix.ssl.ssl_ciphers"), std::string::npos);
}

TEST(TlsServer, WithoutATableTheHandshakeAborts) {
  auto sc = context();
  Handshake h;
  auto out = h.run(*sc, nullptr, sni("other.example.com"));
  EXPECT_FALSE(out.ok);
}

// Tickets with a fake clock: a ticket made under the previous key still
// resumes after one rotation (and is renewed), not after two; a fresh
// context's ticket never resumes against another context's keys.
TEST(TlsServer, TicketKeysRotateAndKeepThePreviousKey) {
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    SCOPED_TRACE(version);
    int64_t now = 1000;
    auto keys = std::make_unique<TicketKeys>(60, [&now] { return now; });
    TicketKeys* ring = keys.get();
    SslConfig cfg;
    cfg.session_tickets = true;
    ServerContext::Options opts;
    opts.tickets = std::move(keys);
    auto created = ServerContext::create(cfg, std::move(opts));
    ASSERT_TRUE(created.ok()) << created.error();
    auto& sc = *created;
    auto table = table_of(json::array{dual_object()});
    auto fresh = handshake(*sc, table, versions(sni("dual.example.com"), version, version));
    ASSERT_TRUE(fresh.ok);
    ASSERT_TRUE(fresh.session);
    EXPECT_TRUE(SSL_SESSION_has_ticket(fresh.session.get()));
    ClientOptions again = versions(sni("dual.example.com"), version, version);
    again.session = fresh.session.get();
    EXPECT_TRUE(handshake(*sc, table, again).reused);  // same key
    now += 59;
    EXPECT_TRUE(handshake(*sc, table, again).reused);
    EXPECT_EQ(ring->generation(), 1u);
    now += 1;  // one rotation: the ticket's key is the previous one
    auto after_one = handshake(*sc, table, again);
    EXPECT_TRUE(after_one.reused);
    EXPECT_EQ(ring->generation(), 2u);
    now += 60;  // two rotations: its key is gone, a full handshake follows
    auto after_two = handshake(*sc, table, again);
    EXPECT_TRUE(after_two.ok);
    EXPECT_FALSE(after_two.reused);
    EXPECT_EQ(ring->generation(), 3u);
    // The ticket renewed after one rotation was made under the key that is
    // now the previous one: it still resumes.
    ClientOptions renewed = versions(sni("dual.example.com"), version, version);
    renewed.session = after_one.session.get();
    EXPECT_TRUE(handshake(*sc, table, renewed).reused);
  }
}

TEST(TlsServer, TicketKeysCatchUpAfterALongIdle) {
  int64_t now = 0;
  SslConfig cfg;
  cfg.session_tickets = true;
  ServerContext::Options opts;
  opts.tickets = std::make_unique<TicketKeys>(60, [&now] { return now; });
  auto created = ServerContext::create(cfg, std::move(opts));
  ASSERT_TRUE(created.ok());
  auto table = table_of(json::array{dual_object()});
  auto fresh = handshake(**created, table, versions(sni("dual.example.com"), TLS1_2_VERSION, TLS1_2_VERSION));
  ASSERT_TRUE(fresh.ok);
  now += 3600;  // many periods without a handshake: no key from before survives
  ClientOptions again = versions(sni("dual.example.com"), TLS1_2_VERSION, TLS1_2_VERSION);
  again.session = fresh.session.get();
  EXPECT_FALSE(handshake(**created, table, again).reused);
}

// The shared session cache is bounded: many distinct clients leave it at
// its cap (the oldest sessions make room), and the metric says so.
TEST(TlsServer, SessionCacheStaysAtItsCap) {
  SslConfig cfg;
  ServerContext::Options opts;
  opts.session_cache_size = 16;
  auto created = ServerContext::create(cfg, std::move(opts));
  ASSERT_TRUE(created.ok());
  auto& sc = *created;
  auto table = table_of(json::array{dual_object()});
  for (int i = 0; i < 40; ++i) {
    Handshake h;
    ASSERT_TRUE(h.run(*sc, table, versions(sni("dual.example.com"), TLS1_2_VERSION, TLS1_2_VERSION)).ok);
  }
  // 40 sessions made, the cache at its cap (OpenSSL may evict one more than
  // needed when it makes room).
  const long n = SSL_CTX_sess_number(sc->native());
  EXPECT_LE(n, 16);
  EXPECT_GE(n, 15);
  const std::string m = sc->prometheus();
  EXPECT_NE(m.find("holdfast_tls_session_cache_sessions " + std::to_string(n) + "\n"), std::string::npos) << m;
  EXPECT_NE(m.find("holdfast_tls_session_cache_size_max 16\n"), std::string::npos) << m;
  EXPECT_NE(m.find("holdfast_tls_handshake_failures_total{reason=\"unknown_sni\"} 0\n"), std::string::npos) << m;
  EXPECT_EQ(m.find("holdfast_tls_ticket_keys_total"), std::string::npos);  // tickets are off
}

TEST(TlsServer, SelectionFailuresAreRecordedOnTheConnection) {
  auto sc = context();
  auto table = table_of(json::array{dual_object()});
  Handshake h;
  EXPECT_FALSE(h.run(*sc, table, sni("unknown.example.com")).ok);
  ASSERT_TRUE(selection_failure(h.server.get()));
  EXPECT_TRUE(*selection_failure(h.server.get()) == HandshakeFailure::unknown_sni);
  Handshake n;
  EXPECT_FALSE(n.run(*sc, table, sni("")).ok);
  EXPECT_TRUE(selection_failure(n.server.get()) == HandshakeFailure::no_sni);
  EXPECT_EQ(ServerContext::of(n.server.get()), sc.get());
}
