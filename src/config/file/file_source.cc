#include "config/file/file_source.h"

#include <sys/stat.h>

#include <fmt/format.h>

#include <boost/json.hpp>
#include <fstream>
#include <sstream>

#include "core/budgets.h"
#include "core/log.h"
#include "core/yaml_json.h"

namespace holdfast::config {
namespace json = boost::json;

namespace {
// Substitutes ${{VAR}} inside every string of a parsed JSON document.
Status substitute_in_json(json::value& v) {
  if (v.is_string()) {
    std::string_view s = v.as_string();
    if (s.find("${{") == std::string_view::npos) return {};
    auto r = substitute_env(s);
    if (!r) return Error{r.error()};
    v = json::string(*r);
  } else if (v.is_array()) {
    for (auto& e : v.as_array())
      if (auto st = substitute_in_json(e); !st) return st;
  } else if (v.is_object()) {
    for (auto& kv : v.as_object())
      if (auto st = substitute_in_json(kv.value()); !st) return st;
  }
  return {};
}

bool has_end_marker(const std::string& text) {
  // APISIX: the last 10 bytes must match #END\s*$
  std::string_view tail = text;
  if (tail.size() > 10) tail = tail.substr(tail.size() - 10);
  auto pos = tail.rfind("#END");
  if (pos == std::string_view::npos) return false;
  for (char c : tail.substr(pos + 4))
    if (!isspace(static_cast<unsigned char>(c))) return false;
  return true;
}
}  // namespace

Result<json::value> read_standalone(const std::string& path, bool yaml) {
  constexpr budgets::Document budget = budgets::document(budgets::kStandaloneWrapper);
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{"cannot open " + path};
  // Refuse an oversized file before reading it into memory.
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) > budget.max_bytes)
    return Error{fmt::format("{}: file of {} bytes exceeds the limit of {} bytes", path, st.st_size, budget.max_bytes)};
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (yaml) {
    if (!has_end_marker(text)) return Error{path + ": missing valid end flag (#END)"};
    auto sub = substitute_env(text);
    if (!sub) return Error{path + ": " + sub.error()};
    auto doc = yaml_to_json(*sub, budget);
    if (!doc) return Error{path + ": " + doc.error()};
    if (doc->is_null()) return json::value(json::object());
    if (!doc->is_object()) return Error{path + ": the top level must be a mapping"};
    return doc;
  }
  auto parsed = budgets::parse_json(text, budget);
  if (!parsed) return Error{path + ": " + parsed.error()};
  json::value doc = std::move(*parsed);
  if (!doc.is_object()) return Error{path + ": the top level must be an object"};
  if (auto st = substitute_in_json(doc); !st) return Error{path + ": " + st.error()};
  return doc;
}

FileSource::FileSource(boost::asio::io_context& io, Manager& mgr, std::string path, bool yaml)
    : timer_(io), mgr_(mgr), path_(std::move(path)), yaml_(yaml) {}

void FileSource::start() {
  check();
  schedule();
}

void FileSource::stop() {
  stopped_ = true;
  timer_.cancel();
}

void FileSource::schedule() {
  timer_.expires_after(std::chrono::seconds(1));
  timer_.async_wait([this](boost::system::error_code ec) {
    // stopped_ too: the timer may have expired just before stop().
    if (ec || stopped_) return;
    check();
    schedule();
  });
}

bool FileSource::check() {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) {
    std::string err = "cannot stat " + path_;
    if (err != last_error_) log::error("standalone file: {}", err);
    last_error_ = err;
    return false;
  }
  std::string stamp = std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + ":" +
                      std::to_string(st.st_size) + ":" + std::to_string(st.st_ino);
  if (stamp == last_stamp_) return false;
  Result<json::value> doc = Error{""};
  try {
    doc = read_standalone(path_, yaml_);
  } catch (const std::bad_alloc&) {
    doc = Error{path_ + ": out of memory while reading the file"};
  }
  if (!doc) {
    // Keep the previous configuration; log once per distinct file version.
    log::error("standalone file not applied, keeping the previous configuration: {}", doc.error());
    last_stamp_ = stamp;
    return false;
  }
  last_stamp_ = stamp;
  last_error_.clear();
  return mgr_.apply(*doc, "file", std::to_string(st.st_mtim.tv_sec)).ok();
}

}  // namespace holdfast::config
