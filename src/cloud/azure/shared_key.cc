#include "cloud/azure/shared_key.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>

#include "cloud/aws/sigv4.h"
#include "core/base64.h"

namespace holdfast::azure {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// Runs of spaces and tabs become one space; leading and trailing ones go.
std::string collapse_whitespace(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

}  // namespace

std::string string_to_sign(const SharedKeyInput& in) {
  std::map<std::string, std::string> std_headers;  // the standard ones, by lower-case name
  std::map<std::string, std::string> ms_headers;   // x-ms-*, sorted by name
  for (const auto& [k, v] : in.headers) {
    std::string name = lower(k);
    if (name.rfind("x-ms-", 0) == 0) ms_headers[name] = collapse_whitespace(v);
    else std_headers[name] = v;
  }
  auto header = [&](const char* name) -> std::string {
    auto it = std_headers.find(name);
    return it == std_headers.end() ? std::string() : it->second;
  };
  // Since version 2015-02-21 a zero Content-Length signs as empty.
  std::string content_length = header("content-length");
  if (content_length == "0") content_length.clear();
  std::string out = in.method + "\n";
  for (const std::string& v :
       {header("content-encoding"), header("content-language"), content_length, header("content-md5"),
        header("content-type"), header("date"), header("if-modified-since"), header("if-match"),
        header("if-none-match"), header("if-unmodified-since"), header("range")})
    out += v + "\n";
  for (const auto& [k, v] : ms_headers) out += k + ":" + v + "\n";
  out += "/" + in.account + in.encoded_path;
  std::map<std::string, std::vector<std::string>> params;
  for (const auto& [k, v] : in.query) params[lower(k)].push_back(v);
  for (auto& [k, values] : params) {
    std::sort(values.begin(), values.end());
    out += "\n" + k + ":";
    for (size_t i = 0; i < values.size(); ++i) out += (i ? "," : "") + values[i];
  }
  return out;
}

std::string authorization(const std::string& account, std::string_view decoded_key, std::string_view sts) {
  return "SharedKey " + account + ":" + base64_encode(aws::hmac_sha256(decoded_key, sts));
}

std::string rfc1123_now() {
  std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  static const char* const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  return fmt::format("{}, {:02d} {} {} {:02d}:{:02d}:{:02d} GMT", days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
                     tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

}  // namespace holdfast::azure
