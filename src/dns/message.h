// DNS wire format (RFC 1035), just what the resolver needs: an A or AAAA
// query for one name, and the addresses and TTL of the reply, CNAME chains
// followed within the answer section. Replies come from the network, so the
// parser treats every byte as hostile: bounds-checked, compression pointers
// only backwards, names at most 255 bytes.
#pragma once
#include <boost/asio/ip/address.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace holdfast::dns {

constexpr uint16_t kTypeA = 1;
constexpr uint16_t kTypeCname = 5;
constexpr uint16_t kTypeAaaa = 28;
constexpr int kRcodeNxdomain = 3;

// A recursive query (RD set) for `name` (no trailing dot needed). An error
// when the name cannot be a DNS name (empty label, label over 63 bytes,
// name over 253 characters).
Result<std::string> encode_query(uint16_t id, std::string_view name, uint16_t qtype);

struct Reply {
  enum class Kind {
    ok,         // a reply to our query: see rcode, truncated, addrs
    mismatch,   // not a reply to our query (id, QR bit, question): ignore it, keep waiting
    malformed,  // claims to answer our query but cannot be parsed: `error` says why
  };
  Kind kind = Kind::malformed;
  std::string error;
  int rcode = 0;
  bool truncated = false;  // TC: the answer did not fit; ask again over TCP
  // Addresses of type qtype owned by the queried name or the end of its
  // CNAME chain, in answer order; ttl is the smallest TTL on that path.
  std::vector<boost::asio::ip::address> addrs;
  uint32_t ttl = 0;
};

// Parses a reply to the query (id, name, qtype). Never reads outside `msg`.
Reply parse_reply(std::span<const uint8_t> msg, uint16_t id, std::string_view name, uint16_t qtype);

}  // namespace holdfast::dns
