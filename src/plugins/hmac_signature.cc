#include "plugins/hmac_signature.h"

namespace holdfast::plugins::hmac {
namespace {

bool is_alnum(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Lua's `field:match('%s*(%w+)="(.-)"')`: the first `="` with a letter or
// digit before it names the run of letters and digits that ends there; the
// value runs to the next '"'. Without that quote there is no later match
// either (any later `="` lies before no '"' too).
bool match_field(std::string_view field, std::string_view& name, std::string_view& value) {
  for (size_t eq = field.find("=\""); eq != std::string_view::npos; eq = field.find("=\"", eq + 1)) {
    if (eq == 0 || !is_alnum(field[eq - 1])) continue;
    size_t start = eq;
    while (start > 0 && is_alnum(field[start - 1])) --start;
    size_t close = field.find('"', eq + 2);
    if (close == std::string_view::npos) return false;
    name = field.substr(start, eq - start);
    value = field.substr(eq + 2, close - eq - 2);
    return true;
  }
  return false;
}

}  // namespace

std::optional<SignatureParams> parse_signature(std::string_view authorization) {
  static constexpr std::string_view kPrefix = "Signature";
  if (!authorization.starts_with(kPrefix)) return std::nullopt;
  std::string_view rest = authorization.substr(kPrefix.size());
  SignatureParams out;
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view field = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    std::string_view name, value;
    if (field.empty() || !match_field(field, name, value)) continue;
    if (name == "keyId") {
      out.key_id = std::string(value);
    } else if (name == "algorithm") {
      out.algorithm = std::string(value);
    } else if (name == "signature") {
      out.signature = std::string(value);
    } else if (name == "headers") {
      // ngx_re.split(value, " "): empty names sign nothing and are never a
      // signed_headers entry (minLength 1), so they are dropped here.
      std::vector<std::string> names;
      while (!value.empty()) {
        size_t sp = value.find(' ');
        if (sp != 0) names.emplace_back(value.substr(0, sp));
        if (sp == std::string_view::npos) break;
        value.remove_prefix(sp + 1);
      }
      out.headers = std::move(names);
    }
  }
  return out;
}

std::string signing_string(const SignatureParams& p, std::string_view method, std::string_view request_uri,
                           const HeaderLookup& header) {
  std::string out = p.key_id.value_or("");
  out += '\n';
  if (!p.headers) return out;
  if (request_uri.empty()) request_uri = "/";
  for (const auto& name : *p.headers) {
    if (auto v = header(name)) {
      out.append(name).append(": ").append(*v) += '\n';
    } else if (name == "@request-target") {
      out.append(method).append(" ").append(request_uri) += '\n';
    }
  }
  return out;
}

std::optional<int64_t> parse_http_time(std::string_view s) {
  enum { rfc822, rfc850, isoc } fmt = rfc822;
  const char* p = s.data();
  const char* end = p + s.size();
  // The weekday is skipped: up to ',' (RFC 1123, 850) or ' ' (asctime).
  for (; p < end; ++p) {
    if (*p == ',') break;
    if (*p == ' ') {
      fmt = isoc;
      break;
    }
  }
  if (p >= end) return std::nullopt;
  for (++p; p < end; ++p)
    if (*p != ' ') break;
  if (end - p < 18) return std::nullopt;
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  auto two = [&](const char* q, int& v) {
    if (!digit(q[0]) || !digit(q[1])) return false;
    v = (q[0] - '0') * 10 + (q[1] - '0');
    return true;
  };
  int day = 0, month = 0, year = 0, hour = 0, min = 0, sec = 0;
  if (fmt != isoc) {
    if (!two(p, day)) return std::nullopt;
    p += 2;
    if (*p == ' ') {
      if (end - p < 18) return std::nullopt;
      fmt = rfc822;
    } else if (*p == '-') {
      fmt = rfc850;
    } else {
      return std::nullopt;
    }
    ++p;
  }
  static constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  if (end - p < 3) return std::nullopt;
  month = -1;
  for (int i = 0; i < 12; ++i)
    if (std::string_view(p, 3) == kMonths[i]) month = i;
  if (month < 0) return std::nullopt;
  p += 3;
  if (p >= end) return std::nullopt;
  if ((fmt == rfc822 && *p != ' ') || (fmt == rfc850 && *p != '-')) return std::nullopt;
  ++p;
  if (fmt == rfc822) {
    int hi = 0, lo = 0;
    if (end - p < 4 || !two(p, hi) || !two(p + 2, lo)) return std::nullopt;
    year = hi * 100 + lo;
    p += 4;
  } else if (fmt == rfc850) {
    if (end - p < 2 || !two(p, year)) return std::nullopt;
    year += year < 70 ? 2000 : 1900;
    p += 2;
  }
  if (fmt == isoc) {
    if (p < end && *p == ' ') ++p;
    if (p >= end || !digit(*p)) return std::nullopt;
    day = *p++ - '0';
    if (p >= end) return std::nullopt;
    if (*p != ' ') {
      if (!digit(*p)) return std::nullopt;
      day = day * 10 + (*p++ - '0');
    }
    if (end - p < 14) return std::nullopt;
  }
  if (end - p < 9 || *p++ != ' ') return std::nullopt;
  if (!two(p, hour) || p[2] != ':' || !two(p + 3, min) || p[5] != ':' || !two(p + 6, sec)) return std::nullopt;
  p += 8;
  if (fmt == isoc) {
    int hi = 0, lo = 0;
    if (end - p < 5 || *p++ != ' ' || !two(p, hi) || !two(p + 2, lo)) return std::nullopt;
    year = hi * 100 + lo;
  }
  if (hour > 23 || min > 59 || sec > 59) return std::nullopt;
  static constexpr int kMonthDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (day == 29 && month == 1) {
    if ((year & 3) || (year % 100 == 0 && year % 400 != 0)) return std::nullopt;
  } else if (day > kMonthDays[month]) {
    return std::nullopt;
  }
  // Days since the epoch (Gauss's formula over a year starting in March, as nginx).
  int m = month + 1;
  int y = year;
  if ((m -= 2) <= 0) {
    m += 12;
    y -= 1;
  }
  const int64_t days = static_cast<int64_t>(365) * y + y / 4 - y / 100 + y / 400 + 367 * m / 12 - 30 + day - 1 - 719527 + 31 + 28;
  return days * 86400 + hour * 3600 + min * 60 + sec;
}

}  // namespace holdfast::plugins::hmac
