#include "cloud/aws/sigv4.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>

namespace holdfast::aws {

std::string hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return hex(std::string_view(reinterpret_cast<const char*>(md), sizeof md));
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), md, &len);
  return std::string(reinterpret_cast<const char*>(md), len);
}

std::string uri_encode(std::string_view s, bool keep_slash) {
  std::string out;
  out.reserve(s.size() * 3 / 2);
  for (unsigned char c : s) {
    bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                      c == '_' || c == '.' || c == '~';
    if (unreserved || (keep_slash && c == '/')) out += static_cast<char>(c);
    else out += fmt::format("%{:02X}", c);
  }
  return out;
}

std::string amz_date_now() {
  std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

namespace {

std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Removes "." and ".." segments and empty segments, keeping a trailing slash.
std::string normalize(std::string_view path) {
  std::vector<std::string_view> segs;
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    std::string_view seg = path.substr(i, j - i);
    if (seg == "..") { if (!segs.empty()) segs.pop_back(); }
    else if (!seg.empty() && seg != ".") segs.push_back(seg);
    i = j;
  }
  std::string out;
  for (auto s : segs) { out += '/'; out.append(s); }
  bool trailing = !path.empty() && (path.back() == '/' || path.ends_with("/.") || path.ends_with("/.."));
  if (out.empty()) return "/";
  if (trailing) out += '/';
  return out;
}

std::string canonical_query(std::string_view q) {
  std::vector<std::pair<std::string, std::string>> params;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    if (!pair.empty()) {
      size_t eq = pair.find('=');
      std::string k = uri_encode(percent_decode(pair.substr(0, eq)), false);
      std::string v = eq == std::string_view::npos ? "" : uri_encode(percent_decode(pair.substr(eq + 1)), false);
      params.emplace_back(std::move(k), std::move(v));
    }
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [k, v] : params) {
    if (!out.empty()) out += '&';
    out += k + "=" + v;
  }
  return out;
}

// Lowercase name; value trimmed with inner runs of spaces collapsed.
std::string canonical_value(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') { space = !out.empty(); continue; }
    if (space) { out += ' '; space = false; }
    out += c;
  }
  return out;
}

}  // namespace

Signed sign(const SignInput& in, const Credentials& creds, const SignOptions& opts) {
  Signed s;
  std::map<std::string, std::string> hdrs;  // sorted by lowercase name; duplicates joined with ','
  auto add = [&](std::string name, std::string_view value) {
    for (auto& c : name) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
    std::string v = canonical_value(value);
    auto [it, inserted] = hdrs.emplace(name, v);
    if (!inserted) it->second += "," + v;
  };
  for (const auto& [k, v] : in.headers) add(k, v);
  s.headers.emplace_back("X-Amz-Date", opts.amz_date);
  add("x-amz-date", opts.amz_date);
  if (!creds.session_token.empty()) {
    s.headers.emplace_back("X-Amz-Security-Token", creds.session_token);
    if (!opts.omit_session_token) add("x-amz-security-token", creds.session_token);
  }
  if (opts.add_content_sha256) {
    s.headers.emplace_back("X-Amz-Content-Sha256", in.payload_hash);
    add("x-amz-content-sha256", in.payload_hash);
  }
  std::string signed_headers, canonical_headers;
  for (const auto& [k, v] : hdrs) {
    if (!signed_headers.empty()) signed_headers += ';';
    signed_headers += k;
    canonical_headers += k + ":" + v + "\n";
  }
  std::string path = in.path.empty() ? "/" : in.path;
  if (opts.normalize_path) path = normalize(path);
  s.canonical_uri = uri_encode(path, true);
  s.canonical_request = fmt::format("{}\n{}\n{}\n{}\n{}\n{}", in.method, s.canonical_uri, canonical_query(in.query),
                                    canonical_headers, signed_headers, in.payload_hash);
  const std::string date = opts.amz_date.substr(0, 8);
  const std::string scope = fmt::format("{}/{}/{}/aws4_request", date, opts.region, opts.service);
  s.string_to_sign = fmt::format("AWS4-HMAC-SHA256\n{}\n{}\n{}", opts.amz_date, scope, sha256_hex(s.canonical_request));
  std::string k = hmac_sha256("AWS4" + creds.secret_key, date);
  k = hmac_sha256(k, opts.region);
  k = hmac_sha256(k, opts.service);
  k = hmac_sha256(k, "aws4_request");
  s.signature = hex(hmac_sha256(k, s.string_to_sign));
  s.headers.emplace_back("Authorization", fmt::format("AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={}, Signature={}",
                                                      creds.access_key, scope, signed_headers, s.signature));
  return s;
}

}  // namespace holdfast::aws
