// DNS wire format: queries, and replies crafted byte by byte (compression,
// pointer loops, truncation, replies that are not ours).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "dns/message.h"

using namespace holdfast::dns;

namespace {

using Bytes = std::vector<uint8_t>;

void put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}
void put32(Bytes& b, uint32_t v) {
  put16(b, static_cast<uint16_t>(v >> 16));
  put16(b, static_cast<uint16_t>(v));
}
void name(Bytes& b, const std::string& n) {
  size_t start = 0;
  while (start < n.size()) {
    size_t dot = n.find('.', start);
    if (dot == std::string::npos) dot = n.size();
    b.push_back(static_cast<uint8_t>(dot - start));
    b.insert(b.end(), n.begin() + static_cast<long>(start), n.begin() + static_cast<long>(dot));
    start = dot + 1;
  }
  b.push_back(0);
}
void ptr(Bytes& b, uint16_t at) { put16(b, static_cast<uint16_t>(0xC000 | at)); }

// Header + question for `q`; the question name starts at offset 12.
Bytes reply(uint16_t id, const std::string& q, uint16_t qtype, uint16_t ancount, uint16_t flags = 0x8180) {
  Bytes b;
  put16(b, id);
  put16(b, flags);
  put16(b, 1);
  put16(b, ancount);
  put16(b, 0);
  put16(b, 0);
  name(b, q);
  put16(b, qtype);
  put16(b, 1);
  return b;
}
void a_record(Bytes& b, uint32_t ttl, std::initializer_list<uint8_t> ip, uint16_t type = kTypeA) {
  put16(b, type);
  put16(b, 1);
  put32(b, ttl);
  put16(b, static_cast<uint16_t>(ip.size()));
  b.insert(b.end(), ip);
}

Reply parse(const Bytes& b, uint16_t id = 0x1234, const std::string& q = "api.example.com", uint16_t t = kTypeA) {
  return parse_reply(b, id, q, t);
}

}  // namespace

TEST(DnsMessage, QueryEncoding) {
  auto q = encode_query(0xBEEF, "Api.Example.com.", kTypeAaaa);
  ASSERT_TRUE(q);
  Bytes want{0xBE, 0xEF, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
  name(want, "Api.Example.com");
  put16(want, kTypeAaaa);
  put16(want, 1);
  EXPECT_EQ(Bytes(q->begin(), q->end()), want);
  EXPECT_FALSE(encode_query(1, "a..b", kTypeA));
  EXPECT_FALSE(encode_query(1, "", kTypeA));
  EXPECT_FALSE(encode_query(1, std::string(64, 'a') + ".com", kTypeA));
  EXPECT_TRUE(encode_query(1, std::string(63, 'a') + ".com", kTypeA));
}

TEST(DnsMessage, AnswersWithCompressedOwnersAndTtl) {
  Bytes b = reply(0x1234, "api.example.com", kTypeA, 2);
  ptr(b, 12);
  a_record(b, 300, {10, 0, 0, 2});
  ptr(b, 12);
  a_record(b, 60, {10, 0, 0, 1});
  Reply r = parse(b, 0x1234, "API.example.com.");
  ASSERT_EQ(r.kind, Reply::Kind::ok) << r.error;
  ASSERT_EQ(r.addrs.size(), 2u);
  EXPECT_EQ(r.addrs[0].to_string(), "10.0.0.2");
  EXPECT_EQ(r.addrs[1].to_string(), "10.0.0.1");
  EXPECT_EQ(r.ttl, 60u);
}

TEST(DnsMessage, AaaaAnswer) {
  Bytes b = reply(0x1234, "api.example.com", kTypeAaaa, 1);
  ptr(b, 12);
  a_record(b, 30, {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, kTypeAaaa);
  Reply r = parse(b, 0x1234, "api.example.com", kTypeAaaa);
  ASSERT_EQ(r.kind, Reply::Kind::ok) << r.error;
  ASSERT_EQ(r.addrs.size(), 1u);
  EXPECT_EQ(r.addrs[0].to_string(), "2001:db8::1");
}

TEST(DnsMessage, CnameChainFollowedWithinTheAnswer) {
  // api.example.com CNAME lb.example.com (ttl 20); lb.example.com CNAME
  // edge.cdn.net (ttl 600); edge.cdn.net A 192.0.2.7 (ttl 100); plus an A
  // record of an unrelated name that must not be used.
  Bytes b = reply(0x1234, "api.example.com", kTypeA, 4);
  ptr(b, 12);
  put16(b, kTypeCname);
  put16(b, 1);
  put32(b, 20);
  const size_t rd1 = b.size();
  put16(b, 0);
  const uint16_t lb_at = static_cast<uint16_t>(b.size());
  b.push_back(2);
  b.push_back('l');
  b.push_back('b');
  ptr(b, 12 + 4);  // "example.com" inside the question
  b[rd1 + 1] = static_cast<uint8_t>(b.size() - rd1 - 2);
  ptr(b, lb_at);
  put16(b, kTypeCname);
  put16(b, 1);
  put32(b, 600);
  Bytes target;
  name(target, "edge.cdn.net");
  const uint16_t edge_at = static_cast<uint16_t>(b.size() + 2);
  put16(b, static_cast<uint16_t>(target.size()));
  b.insert(b.end(), target.begin(), target.end());
  name(b, "other.example.com");
  a_record(b, 5, {203, 0, 113, 9});
  ptr(b, edge_at);
  a_record(b, 100, {192, 0, 2, 7});
  Reply r = parse(b);
  ASSERT_EQ(r.kind, Reply::Kind::ok) << r.error;
  ASSERT_EQ(r.addrs.size(), 1u);
  EXPECT_EQ(r.addrs[0].to_string(), "192.0.2.7");
  EXPECT_EQ(r.ttl, 20u);  // the smallest TTL on the chain
}

TEST(DnsMessage, CnameLeavingTheAnswerGivesNoAddress) {
  Bytes b = reply(0x1234, "api.example.com", kTypeA, 1);
  ptr(b, 12);
  put16(b, kTypeCname);
  put16(b, 1);
  put32(b, 20);
  Bytes target;
  name(target, "elsewhere.net");
  put16(b, static_cast<uint16_t>(target.size()));
  b.insert(b.end(), target.begin(), target.end());
  Reply r = parse(b);
  EXPECT_EQ(r.kind, Reply::Kind::ok);
  EXPECT_TRUE(r.addrs.empty());
}

TEST(DnsMessage, CnameLoopEnds) {
  // a CNAME b, b CNAME a: no address, and the parser stops.
  Bytes b = reply(0x1234, "a.x", kTypeA, 2);
  ptr(b, 12);
  put16(b, kTypeCname);
  put16(b, 1);
  put32(b, 20);
  Bytes bx;
  name(bx, "b.x");
  const uint16_t b_at = static_cast<uint16_t>(b.size() + 2);
  put16(b, static_cast<uint16_t>(bx.size()));
  b.insert(b.end(), bx.begin(), bx.end());
  ptr(b, b_at);
  put16(b, kTypeCname);
  put16(b, 1);
  put32(b, 20);
  put16(b, 2);
  ptr(b, 12);
  Reply r = parse(b, 0x1234, "a.x");
  EXPECT_EQ(r.kind, Reply::Kind::ok);
  EXPECT_TRUE(r.addrs.empty());
}

TEST(DnsMessage, CompressionPointerLoopsAreMalformed) {
  // The answer's owner is a pointer to itself.
  Bytes b = reply(0x1234, "api.example.com", kTypeA, 1);
  ptr(b, static_cast<uint16_t>(b.size()));
  a_record(b, 1, {1, 2, 3, 4});
  EXPECT_EQ(parse(b).kind, Reply::Kind::malformed);

  // A label followed by a pointer back to that label: a -> a -> a ...
  Bytes c = reply(0x1234, "api.example.com", kTypeA, 1);
  const uint16_t at = static_cast<uint16_t>(c.size());
  c.push_back(1);
  c.push_back('a');
  ptr(c, at);
  a_record(c, 1, {1, 2, 3, 4});
  EXPECT_EQ(parse(c).kind, Reply::Kind::malformed);

  // Two pointers that point at each other (forward then back).
  Bytes d = reply(0x1234, "api.example.com", kTypeA, 1);
  const uint16_t p1 = static_cast<uint16_t>(d.size());
  ptr(d, static_cast<uint16_t>(p1 + 2));
  ptr(d, p1);
  a_record(d, 1, {1, 2, 3, 4});
  EXPECT_EQ(parse(d).kind, Reply::Kind::malformed);
}

TEST(DnsMessage, OverlongNameIsMalformed) {
  // 130 labels of one byte each: 260 wire bytes.
  Bytes b = reply(0x1234, "api.example.com", kTypeA, 1);
  for (int i = 0; i < 130; ++i) {
    b.push_back(1);
    b.push_back('x');
  }
  b.push_back(0);
  a_record(b, 1, {1, 2, 3, 4});
  EXPECT_EQ(parse(b).kind, Reply::Kind::malformed);
}

TEST(DnsMessage, CutShortAnywhereNeverReadsPastTheEnd) {
  Bytes b = reply(0x1234, "api.example.com", kTypeA, 2);
  ptr(b, 12);
  a_record(b, 300, {10, 0, 0, 2});
  ptr(b, 12);
  a_record(b, 60, {10, 0, 0, 1});
  for (size_t n = 0; n < b.size(); ++n) {
    Bytes cut(b.begin(), b.begin() + static_cast<long>(n));
    Reply r = parse(cut);
    EXPECT_TRUE(r.kind != Reply::Kind::ok || r.addrs.empty()) << n;
  }
  EXPECT_EQ(parse(b).addrs.size(), 2u);
}

TEST(DnsMessage, WrongRecordLengthIsMalformed) {
  Bytes b = reply(0x1234, "api.example.com", kTypeA, 1);
  ptr(b, 12);
  a_record(b, 1, {1, 2, 3, 4, 5});
  EXPECT_EQ(parse(b).kind, Reply::Kind::malformed);
}

TEST(DnsMessage, TruncatedReplyAsksForTcp) {
  // TC set, and the answer cut in the middle of a record.
  Bytes b = reply(0x1234, "api.example.com", kTypeA, 3, 0x8380);
  ptr(b, 12);
  a_record(b, 300, {10, 0, 0, 2});
  b.resize(b.size() - 2);
  Reply r = parse(b);
  ASSERT_EQ(r.kind, Reply::Kind::ok);
  EXPECT_TRUE(r.truncated);
  EXPECT_TRUE(r.addrs.empty());
}

TEST(DnsMessage, RepliesThatAreNotOursAreIgnored) {
  Bytes ok = reply(0x1234, "api.example.com", kTypeA, 1);
  ptr(ok, 12);
  a_record(ok, 1, {1, 2, 3, 4});
  EXPECT_EQ(parse(ok, 0x1235).kind, Reply::Kind::mismatch);                         // wrong id
  EXPECT_EQ(parse(ok, 0x1234, "api.example.org").kind, Reply::Kind::mismatch);      // other name
  EXPECT_EQ(parse(ok, 0x1234, "api.example.com", kTypeAaaa).kind, Reply::Kind::mismatch);  // other type
  Bytes query = ok;
  query[2] &= 0x7F;  // QR clear: a query, not a reply
  EXPECT_EQ(parse(query).kind, Reply::Kind::mismatch);
  Bytes two = ok;
  two[5] = 2;  // two questions
  EXPECT_EQ(parse(two).kind, Reply::Kind::mismatch);
  EXPECT_EQ(parse(Bytes{0x12, 0x34}).kind, Reply::Kind::mismatch);
  EXPECT_EQ(parse(ok).kind, Reply::Kind::ok);
}

TEST(DnsMessage, RcodeAndTtlTopBit) {
  Bytes nx = reply(0x1234, "api.example.com", kTypeA, 0, 0x8183);
  Reply r = parse(nx);
  EXPECT_EQ(r.kind, Reply::Kind::ok);
  EXPECT_EQ(r.rcode, kRcodeNxdomain);
  Bytes b = reply(0x1234, "api.example.com", kTypeA, 1);
  ptr(b, 12);
  a_record(b, 0x80000001u, {1, 2, 3, 4});
  EXPECT_EQ(parse(b).ttl, 0u);  // RFC 2181: top bit set means zero
}
