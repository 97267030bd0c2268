// request-id (priority 12015): keeps or generates a request id, passes it
// upstream and echoes it in the response. Every algorithm of APISIX 3.x
// produces its own format: uuid (v4), uuidv7, nanoid, range_id, ksuid.
#include <fmt/format.h>
#include <openssl/rand.h>

#include <array>
#include <chrono>

#include "plugins/common.h"

namespace holdfast::plugins {
namespace {

// Random bytes from OpenSSL's CSPRNG (APISIX's resty.random for nanoid);
// the per-thread PRNG only if it ever fails.
template <size_t N>
std::array<unsigned char, N> secure_bytes() {
  std::array<unsigned char, N> b{};
  if (RAND_bytes(b.data(), static_cast<int>(N)) != 1)
    for (auto& c : b) c = static_cast<unsigned char>(rng()());
  return b;
}

// nanoid: 21 characters of the standard 64-character alphabet, 6 bits of
// CSPRNG output each (no modulo bias), as APISIX's get_nanoid.
std::string nanoid() {
  static constexpr char kAlphabet[] =
      "-_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  auto b = secure_bytes<21>();
  std::string id(21, ' ');
  for (size_t i = 0; i < 21; ++i) id[i] = kAlphabet[b[i] & 63];
  return id;
}

// UUID version 7 as APISIX's core.utils.generate_uuid_v7: 48 bits of Unix
// milliseconds, an 18-bit sequence (12 bits after the version nibble, 6 in
// the variant byte) that counts ids within one millisecond, and 56 random
// bits drawn when the millisecond changes. Per worker thread, monotone even
// if the clock steps back. Where APISIX waits for the next millisecond once
// the sequence is spent, the timestamp moves one millisecond ahead instead:
// a worker never spins.
std::string uuid_v7() {
  thread_local int64_t last_ms = 0;
  thread_local uint32_t seq = 0;
  thread_local std::array<uint8_t, 7> rand_b{};
  auto reset = [](int64_t ms) {
    last_ms = ms;
    seq = 0;
    uint64_t r = rng()();
    for (auto& b : rand_b) {
      b = static_cast<uint8_t>(r);
      r >>= 8;
    }
  };
  int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  if (ms > last_ms) {
    reset(ms);
  } else {
    ms = last_ms;
    if (++seq > 0x3ffff) reset(++ms);
  }
  const uint64_t t = static_cast<uint64_t>(ms) & 0xffffffffffffULL;
  return fmt::format("{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
                     t >> 16, t & 0xffff, 0x7000 | (seq >> 6), 0x80 | (seq & 0x3f), rand_b[0],
                     rand_b[1], rand_b[2], rand_b[3], rand_b[4], rand_b[5], rand_b[6]);
}

// KSUID (resty.ksuid): 4 bytes of seconds since 2014-05-13 (1400000000)
// and 16 random bytes, base62, 27 characters.
std::string ksuid() {
  static constexpr char kBase62[] =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  std::array<uint8_t, 20> n{};
  const int64_t secs = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count() -
                       1400000000;
  const uint32_t ts = static_cast<uint32_t>(secs < 0 ? 0 : secs);
  n[0] = ts >> 24;
  n[1] = ts >> 16;
  n[2] = ts >> 8;
  n[3] = ts;
  auto payload = secure_bytes<16>();
  std::copy(payload.begin(), payload.end(), n.begin() + 4);
  // Long division of the 160-bit big-endian number by 62, digit by digit.
  std::string out(27, '0');
  for (size_t pos = 27; pos-- > 0;) {
    uint32_t rem = 0;
    for (auto& byte : n) {
      uint32_t cur = (rem << 8) | byte;
      byte = static_cast<uint8_t>(cur / 62);
      rem = cur % 62;
    }
    out[pos] = kBase62[rem];
  }
  return out;
}

class RequestId final : public Plugin {
 public:
  std::string header = "X-Request-Id";
  bool include_in_response = true;
  std::string algorithm = "uuid";
  int64_t range_length = 16;
  // APISIX's default, its doubled G and missing J included.
  std::string char_set = "abcdefghijklmnopqrstuvwxyzABCDEFGHIGKLMNOPQRSTUVWXYZ0123456789";

  std::string generate() const {
    if (algorithm == "uuidv7") return uuid_v7();
    if (algorithm == "nanoid") return nanoid();
    if (algorithm == "ksuid") return ksuid();
    if (algorithm == "range_id") {
      std::string id(static_cast<size_t>(range_length), ' ');
      for (auto& ch : id) ch = char_set[rng()() % char_set.size()];
      return id;
    }
    return uuid_v4();
  }

  Action rewrite(RequestCtx& ctx) const override {
    auto incoming = ctx.request_header(header);
    if (incoming && !incoming->empty()) {
      ctx.request_id = *incoming;
      return Action::next;
    }
    ctx.request_id = generate();
    ctx.set_request_header(header, ctx.request_id);
    return Action::next;
  }
  // APISIX sets the response header only when the response does not carry
  // a non-empty one already: an upstream's own id (or one a plugin's answer
  // set) is kept.
  void header_filter(RequestCtx& ctx) const override {
    if (!include_in_response || ctx.request_id.empty()) return;
    auto has_own = [&](const auto& list) {
      for (const auto& h : list)
        if (http::iequals(h.name, header) && !h.value.empty()) return true;
      return false;
    };
    if (ctx.upstream_resp ? has_own(ctx.upstream_resp->headers) : has_own(ctx.resp_headers)) return;
    if (has_own(ctx.resp_set) || has_own(ctx.resp_add)) return;
    ctx.set_response_header(header, ctx.request_id);
  }
};

const FieldRules kRangeId{.implemented = {"length", "char_set"}};
const FieldRules kFields{.implemented = {"header_name", "include_in_response", "algorithm", "range_id"},
                         .nested = {{"range_id", &kRangeId}}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<RequestId>();
  Checker c(conf, "request-id");
  c.only(kFields.implemented);
  p->header = c.str("header_name", false, 1).value_or("X-Request-Id");
  p->include_in_response = c.boolean("include_in_response").value_or(true);
  if (auto a = c.str("algorithm")) {
    // APISIX's enum, with its message (no list of values).
    if (*a != "uuid" && *a != "nanoid" && *a != "range_id" && *a != "ksuid" && *a != "uuidv7")
      c.fail("property \"algorithm\" validation failed: matches none of the enum values");
    else
      p->algorithm = *a;
  }
  if (const json::object* r = c.object("range_id")) {
    Checker rc(*r, "range_id");
    // An upper bound APISIX does not have: the id goes into a header line.
    p->range_length = rc.integer("length", false, 6, 4096).value_or(16);
    p->char_set = rc.str("char_set", false, 6).value_or(p->char_set);
    if (rc.failed()) c.fail("property \"range_id\" validation failed: " + rc.error());
  }
  return done(c, p);
}

}  // namespace

extern const PluginDef kRequestId{"request-id", 12015, false, &create, nullptr, nullptr, &kFields};

}  // namespace holdfast::plugins
