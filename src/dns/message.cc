#include "dns/message.h"

#include <algorithm>
#include <array>
#include <limits>
#include <unordered_map>

namespace holdfast::dns {
namespace {

constexpr uint16_t kClassIn = 1;
constexpr size_t kHeader = 12;
constexpr size_t kMaxName = 255;   // wire bytes, RFC 1035 §2.3.4
constexpr int kMaxChain = 8;       // CNAME hops followed within one answer

uint16_t u16(std::span<const uint8_t> m, size_t at) { return static_cast<uint16_t>(m[at] << 8 | m[at + 1]); }
uint32_t u32(std::span<const uint8_t> m, size_t at) {
  return static_cast<uint32_t>(m[at]) << 24 | static_cast<uint32_t>(m[at + 1]) << 16 |
         static_cast<uint32_t>(m[at + 2]) << 8 | m[at + 3];
}

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

std::string normalise(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  std::string out(name);
  for (char& c : out) c = lower(c);
  return out;
}

// Reads the (possibly compressed) name at `pos` into `out` (lower case,
// labels joined by '.'), and moves `pos` past it. A pointer must point
// before the start of the run of labels that holds it, so each jump lands
// strictly earlier than the one before and no pointer chain can loop.
bool read_name(std::span<const uint8_t> m, size_t& pos, std::string& out) {
  out.clear();
  size_t at = pos;
  size_t run_start = pos;
  size_t wire = 0;
  bool jumped = false;
  for (;;) {
    if (at >= m.size()) return false;
    uint8_t len = m[at];
    if ((len & 0xC0) == 0xC0) {
      if (at + 1 >= m.size()) return false;
      size_t target = static_cast<size_t>(len & 0x3F) << 8 | m[at + 1];
      if (target >= run_start) return false;
      if (!jumped) pos = at + 2;
      jumped = true;
      at = run_start = target;
      continue;
    }
    if (len & 0xC0) return false;  // 0x40 / 0x80: extended label types, obsolete
    wire += len + 1u;
    if (wire > kMaxName) return false;
    if (len == 0) {
      if (!jumped) pos = at + 1;
      return true;
    }
    if (at + 1 + len > m.size()) return false;
    if (!out.empty()) out += '.';
    for (size_t i = 0; i < len; ++i) out += lower(static_cast<char>(m[at + 1 + i]));
    at += 1 + len;
  }
}

}  // namespace

Result<std::string> encode_query(uint16_t id, std::string_view name, uint16_t qtype) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > 253) return Error{"invalid DNS name length"};
  std::string q;
  q.reserve(kHeader + name.size() + 6);
  const std::array<uint8_t, kHeader> header{static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id), 0x01, 0x00,
                                            0, 1, 0, 0, 0, 0, 0, 0};
  q.append(reinterpret_cast<const char*>(header.data()), header.size());
  size_t start = 0;
  while (start <= name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string_view::npos) dot = name.size();
    size_t len = dot - start;
    if (len == 0 || len > 63) return Error{"invalid DNS label"};
    q += static_cast<char>(len);
    q.append(name.substr(start, len));
    start = dot + 1;
  }
  q += '\0';
  q += static_cast<char>(qtype >> 8);
  q += static_cast<char>(qtype & 0xFF);
  q += '\0';
  q += static_cast<char>(kClassIn);
  return q;
}

Reply parse_reply(std::span<const uint8_t> m, uint16_t id, std::string_view qname_in, uint16_t qtype) {
  Reply r;
  auto bad = [&](const char* why) {
    r.kind = Reply::Kind::malformed;
    r.error = why;
    r.addrs.clear();
    return r;
  };
  r.kind = Reply::Kind::mismatch;
  if (m.size() < kHeader || u16(m, 0) != id) return r;
  const uint16_t flags = u16(m, 2);
  if (!(flags & 0x8000) || ((flags >> 11) & 0xF) != 0) return r;  // not a response, or not a QUERY
  if (u16(m, 4) != 1) return r;                                      // we ask exactly one question
  const std::string qname = normalise(qname_in);
  size_t pos = kHeader;
  std::string owner;
  if (!read_name(m, pos, owner) || pos + 4 > m.size()) return r;
  if (owner != qname || u16(m, pos) != qtype || u16(m, pos + 2) != kClassIn) return r;
  pos += 4;

  r.kind = Reply::Kind::ok;
  r.rcode = flags & 0xF;
  r.truncated = (flags & 0x0200) != 0;
  // A truncated reply may end in the middle of a record: only the header
  // and the question are trusted, the caller asks again over TCP.
  if (r.truncated || r.rcode != 0) return r;

  struct Record {
    std::string owner;
    boost::asio::ip::address addr;
    uint32_t ttl;
  };
  std::vector<Record> records;
  std::unordered_map<std::string, std::pair<std::string, uint32_t>> cnames;  // owner -> (target, ttl)
  const uint16_t ancount = u16(m, 6);
  for (uint16_t i = 0; i < ancount; ++i) {
    if (!read_name(m, pos, owner)) return bad("bad owner name in answer");
    if (pos + 10 > m.size()) return bad("answer record cut short");
    const uint16_t type = u16(m, pos), cls = u16(m, pos + 2);
    uint32_t ttl = u32(m, pos + 4);
    if (ttl > 0x7FFFFFFFu) ttl = 0;  // RFC 2181 §8: a TTL with the top bit set means zero
    const uint16_t rdlen = u16(m, pos + 8);
    pos += 10;
    if (pos + rdlen > m.size()) return bad("answer data cut short");
    const size_t end = pos + rdlen;
    if (cls == kClassIn && type == kTypeCname) {
      std::string target;
      size_t p = pos;
      if (!read_name(m, p, target) || p != end) return bad("bad CNAME target");
      cnames[owner] = {std::move(target), ttl};
    } else if (cls == kClassIn && type == qtype && (type == kTypeA || type == kTypeAaaa)) {
      if (type == kTypeA) {
        if (rdlen != 4) return bad("A record of wrong length");
        boost::asio::ip::address_v4::bytes_type b;
        std::copy_n(m.begin() + static_cast<std::ptrdiff_t>(pos), 4, b.begin());
        records.push_back({owner, boost::asio::ip::address_v4(b), ttl});
      } else {
        if (rdlen != 16) return bad("AAAA record of wrong length");
        boost::asio::ip::address_v6::bytes_type b;
        std::copy_n(m.begin() + static_cast<std::ptrdiff_t>(pos), 16, b.begin());
        records.push_back({owner, boost::asio::ip::address_v6(b), ttl});
      }
    }
    pos = end;
  }

  std::string cur = qname;
  uint32_t ttl = std::numeric_limits<uint32_t>::max();
  for (int hop = 0; hop <= kMaxChain; ++hop) {
    for (const auto& rec : records) {
      if (rec.owner != cur) continue;
      r.addrs.push_back(rec.addr);
      ttl = std::min(ttl, rec.ttl);
    }
    if (!r.addrs.empty()) break;
    auto it = cnames.find(cur);
    if (it == cnames.end()) break;
    ttl = std::min(ttl, it->second.second);
    cur = it->second.first;
  }
  r.ttl = r.addrs.empty() ? 0 : ttl;
  return r;
}

}  // namespace holdfast::dns
