// What an operator watches about the certificates of the current snapshot:
// their expiry times, for /metrics (alerting on certificates about to
// expire) and `holdfast snapshot inspect`. Never key material.
#pragma once
#include <string>
#include <string_view>

#include "tls/cert_table.h"

namespace holdfast::tls {

// holdfast_ssl_certificate_expiry_timestamp_seconds{sni,ssl_id,type}: one
// sample per certificate and SNI of every server object with status 1
// (CertTable::expiries), with its HELP/TYPE lines; empty without one.
std::string expiry_prometheus(const CertTable& table);

// A Prometheus label value: backslash, double quote and newline escaped
// as the text format defines; any other control character (which no
// escape covers, and which Holdfast never writes) becomes '_'.
std::string prometheus_label(std::string_view v);



}  // namespace holdfast::tls
