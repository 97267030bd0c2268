// libFuzzer target: the DNS reply parser (parse_reply), which reads UDP and
// TCP answers from whatever the network delivers. The first input byte picks
// the question (A or AAAA, and one of two names); the reply's own id is used,
// so the fuzzer gets past the id check and into the question, answers,
// compression pointers and CNAME chains. Beyond "no crash or hang": only an
// `ok` reply carries addresses, of the family asked for, each from its own
// record, and the id is honoured.
#include <cstdint>
#include <span>
#include <string_view>

#include "dns/message.h"
#include "harness.h"

using namespace holdfast::dns;
using fuzz::check;

namespace {

// The smallest answer record that yields an address: a root owner (1 byte),
// type, class, TTL, length (10) and an IPv4 address (4).
constexpr size_t kMinAddressRecord = 15;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static constexpr std::string_view kNames[] = {"api.example.com", "a.x"};
  const uint16_t qtype = (data[0] & 1) ? kTypeAaaa : kTypeA;
  const std::string_view name = kNames[(data[0] >> 1) % std::size(kNames)];
  std::span<const uint8_t> msg(data + 1, size - 1);
  const uint16_t id = msg.size() >= 2 ? static_cast<uint16_t>(msg[0] << 8 | msg[1]) : 0;

  Reply r = parse_reply(msg, id, name, qtype);
  if (r.kind != Reply::Kind::ok) check(r.addrs.empty() && r.ttl == 0);
  if (r.kind == Reply::Kind::malformed) check(!r.error.empty());
  if (r.kind == Reply::Kind::ok && (r.truncated || r.rcode != 0)) check(r.addrs.empty());
  for (const auto& a : r.addrs) check(a.is_v4() == (qtype == kTypeA));
  check(r.addrs.size() * kMinAddressRecord <= msg.size());
  if (r.addrs.empty()) check(r.ttl == 0);
  check(r.ttl <= 0x7FFFFFFFu);  // RFC 2181 §8

  // Another id never matches.
  check(parse_reply(msg, static_cast<uint16_t>(id ^ 1), name, qtype).kind == Reply::Kind::mismatch);
  return 0;
}
