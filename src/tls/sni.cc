#include "tls/sni.h"

#include <cstdint>

namespace holdfast::tls {

std::string normalize_sni(std::string_view name) {
  std::string out(name);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  if (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

ServerNameExt parse_server_name_ext(std::string_view body) {
  ServerNameExt out;
  auto u8 = [&](size_t i) { return static_cast<uint8_t>(body[i]); };
  // list length (2) | type (1) | name length (2) | name
  if (body.size() < 5) return out;
  const size_t list_len = (size_t{u8(0)} << 8) | u8(1);
  if (list_len != body.size() - 2) return out;
  if (u8(2) != 0) return out;  // only host_name (0) is defined
  const size_t name_len = (size_t{u8(3)} << 8) | u8(4);
  // Exactly one entry: the name runs to the end of the list.
  if (name_len == 0 || name_len > 255 || name_len != body.size() - 5) return out;
  std::string_view name = body.substr(5);
  for (char c : name) {
    const auto b = static_cast<uint8_t>(c);
    if (b < 0x21 || b > 0x7e) return out;
  }
  out.name = normalize_sni(name);
  // "." alone normalises to nothing: no name to look up.
  if (out.name.empty()) return out;
  out.kind = ServerNameExt::Kind::name;
  return out;
}

}  // namespace holdfast::tls
