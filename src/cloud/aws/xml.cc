#include "cloud/aws/xml.h"

namespace holdfast::aws {

std::string xml_text(std::string_view xml, std::string_view tag) {
  std::string open = "<" + std::string(tag) + ">";
  std::string close = "</" + std::string(tag) + ">";
  auto a = xml.find(open);
  if (a == std::string_view::npos) return {};
  a += open.size();
  auto b = xml.find(close, a);
  if (b == std::string_view::npos) return {};
  std::string_view raw = xml.substr(a, b - a);
  std::string out;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '&') {
      auto semi = raw.find(';', i);
      if (semi != std::string_view::npos) {
        std::string_view ent = raw.substr(i + 1, semi - i - 1);
        if (ent == "amp") out += '&';
        else if (ent == "lt") out += '<';
        else if (ent == "gt") out += '>';
        else if (ent == "quot") out += '"';
        else if (ent == "apos") out += '\'';
        else out.append(raw.substr(i, semi - i + 1));
        i = semi;
        continue;
      }
    }
    out += raw[i];
  }
  return out;
}

}  // namespace holdfast::aws
