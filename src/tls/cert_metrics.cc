#include "tls/cert_metrics.h"

#include <fmt/format.h>

#include <ctime>

namespace holdfast::tls {

std::string prometheus_label(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else if (u < 0x20 || u == 0x7f) out += '_';
    else out += c;
  }
  return out;
}

std::string expiry_prometheus(const CertTable& table) {
  const auto rows = table.expiries();
  if (rows.empty()) return {};
  std::string out =
      "# HELP holdfast_ssl_certificate_expiry_timestamp_seconds When each certificate served for an SNI expires "
      "(notAfter, Unix seconds)\n"
      "# TYPE holdfast_ssl_certificate_expiry_timestamp_seconds gauge\n";
  for (const auto& r : rows) {
    const std::string id = prometheus_label(r.ssl_id);
    const std::string type = prometheus_label(r.key_type);
    for (const auto& sni : r.snis)
      out += fmt::format("holdfast_ssl_certificate_expiry_timestamp_seconds{{sni=\"{}\",ssl_id=\"{}\",type=\"{}\"}} {}\n",
                         prometheus_label(sni), id, type, r.not_after);
  }
  return out;
}

}  // namespace holdfast::tls
