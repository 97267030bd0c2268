#include "core/yaml_json.h"

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>
#include <yaml-cpp/yaml.h>

#include <boost/json.hpp>

#include <istream>
#include <optional>
#include <streambuf>
#include <unordered_map>
#include <vector>

#include <cerrno>
#include <cstdlib>

namespace holdfast {
namespace {
namespace json = boost::json;

json::value scalar(const std::string& tag, const std::string& s) {
  if (tag != "?") return json::value(s);  // quoted or explicitly tagged: always a string
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  // integers (decimal, optional sign)
  {
    size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
    bool digits = i < s.size();
    for (size_t j = i; j < s.size(); ++j)
      if (s[j] < '0' || s[j] > '9') { digits = false; break; }
    if (digits) {
      errno = 0;
      long long v = std::strtoll(s.c_str(), nullptr, 10);
      if (errno == 0) return v;
    }
  }
  // floats
  {
    char* end = nullptr;
    errno = 0;
    double d = std::strtod(s.c_str(), &end);
    bool numeric_chars = s.find_first_not_of("0123456789+-.eE") == std::string::npos;
    if (numeric_chars && end && *end == '\0' && errno == 0) return d;
  }
  return json::value(s);
}

// Thrown from the event handler to stop the parser at the first budget breach.
struct Refused {
  std::string why;
};

// Builds the JSON value straight from the parser's events. yaml-cpp's own
// node tree shares an aliased node between its uses, and expanding that tree
// naively is what turns a 1 KiB alias bomb into gigabytes; here each alias is
// a copy that is paid for against the budget before it is made.
class Builder final : public YAML::EventHandler {
 public:
  explicit Builder(const budgets::Document& b) : b_(b) {}

  json::value take() { return std::move(root_); }

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t anchor) override {
    ++parsed_;
    add(nullptr, anchor, 1);
  }
  void OnAlias(const YAML::Mark&, YAML::anchor_t anchor) override {
    ++parsed_;
    auto it = anchors_.find(anchor);
    // yaml-cpp registers an anchor when its node starts: an alias to it from
    // inside that node would make the value contain itself.
    if (it == anchors_.end()) throw Refused{"an alias refers to a node that contains it"};
    add(it->second.value, YAML::NullAnchor, it->second.nodes);
  }
  void OnScalar(const YAML::Mark&, const std::string& tag, YAML::anchor_t anchor, const std::string& value) override {
    ++parsed_;
    if (!stack_.empty() && stack_.back().is_map && !stack_.back().key) {
      // A mapping key: kept as text (a null key is "null", as yaml-cpp's as<std::string> gave).
      stack_.back().key = value.empty() && tag == "?" ? std::string("null") : value;
      if (anchor != YAML::NullAnchor) anchors_[anchor] = Anchored{json::value(value), 1};
      return;
    }
    add(scalar(tag, value), anchor, 1);
  }
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    open(false, anchor);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    open(true, anchor);
  }
  void OnMapEnd() override { close(); }

 private:
  struct Frame {
    bool is_map = false;
    json::value value;
    YAML::anchor_t anchor = YAML::NullAnchor;
    size_t first_node = 0;            // produced_ when the container opened
    std::optional<std::string> key;   // maps: the key waiting for its value
  };
  struct Anchored {
    json::value value;
    size_t nodes = 1;  // what one more copy costs
  };

  void charge(size_t nodes) {
    produced_ += nodes;
    if (produced_ > b_.alias_factor * parsed_)
      throw Refused{fmt::format("aliases expand the document beyond {} times the {} nodes parsed", b_.alias_factor,
                                parsed_)};
  }

  void open(bool is_map, YAML::anchor_t anchor) {
    ++parsed_;
    if (!stack_.empty() && stack_.back().is_map && !stack_.back().key) throw Refused{"a mapping key must be a scalar"};
    if (stack_.size() >= b_.max_depth)
      throw Refused{fmt::format("nested deeper than {} levels (the limit is {} per resource)", b_.max_depth,
                                budgets::kMaxResourceDepth)};
    charge(1);
    Frame f;
    f.is_map = is_map;
    if (is_map) f.value = json::object();
    else f.value = json::array();
    f.anchor = anchor;
    f.first_node = produced_ - 1;
    stack_.push_back(std::move(f));
  }

  void close() {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    place(std::move(f.value), f.anchor, produced_ - f.first_node);
  }

  // A finished scalar or alias copy: charged here (containers were charged as they grew).
  void add(json::value v, YAML::anchor_t anchor, size_t nodes) {
    if (!stack_.empty() && stack_.back().is_map && !stack_.back().key) {
      // A null key, or an alias used as a key: its text, as yaml-cpp's as<std::string> gave.
      if (v.is_object() || v.is_array()) throw Refused{"a mapping key must be a scalar"};
      stack_.back().key = v.is_string() ? std::string(v.as_string()) : json::serialize(v);
      return;
    }
    charge(nodes);
    place(std::move(v), anchor, nodes);
  }

  void place(json::value v, YAML::anchor_t anchor, size_t nodes) {
    if (anchor != YAML::NullAnchor) anchors_[anchor] = Anchored{v, nodes};
    if (stack_.empty()) {
      root_ = std::move(v);
      return;
    }
    Frame& top = stack_.back();
    if (top.is_map) {
      top.value.as_object()[*top.key] = std::move(v);
      top.key.reset();
    } else {
      top.value.as_array().push_back(std::move(v));
    }
  }

  const budgets::Document& b_;
  json::value root_;
  std::vector<Frame> stack_;
  std::unordered_map<YAML::anchor_t, Anchored> anchors_;
  size_t parsed_ = 0;    // events read from the text
  size_t produced_ = 0;  // JSON values built, alias copies included
};

// An istream over the caller's text, without copying it.
struct ViewBuf : std::streambuf {
  explicit ViewBuf(std::string_view s) {
    char* p = const_cast<char*>(s.data());
    setg(p, p, p + s.size());
  }
};

}  // namespace

Result<json::value> yaml_to_json(std::string_view text, const budgets::Document& b) {
  if (text.size() > b.max_bytes)
    return Error{fmt::format("document of {} bytes exceeds the limit of {} bytes", text.size(), b.max_bytes)};
  try {
    ViewBuf buf(text);
    std::istream in(&buf);
    YAML::Parser parser(in);
    Builder builder(b);
    parser.HandleNextDocument(builder);  // only the first document, as YAML::Load
    return builder.take();
  } catch (const Refused& r) {
    return Error{"YAML refused: " + r.why};
  } catch (const YAML::Exception& e) {
    return Error{std::string("invalid YAML: ") + e.what()};
  } catch (const std::bad_alloc&) {
    return Error{fmt::format("out of memory while converting a YAML document of {} bytes", text.size())};
  }
}

Result<std::string> substitute_env(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (true) {
    size_t start = text.find("${{", pos);
    if (start == std::string_view::npos) {
      out.append(text.substr(pos));
      return out;
    }
    size_t end = text.find("}}", start + 3);
    if (end == std::string_view::npos) {
      out.append(text.substr(pos));
      return out;
    }
    out.append(text.substr(pos, start - pos));
    std::string_view expr = text.substr(start + 3, end - start - 3);
    std::string name(expr), def;
    bool has_default = false;
    if (auto d = expr.find(":="); d != std::string_view::npos) {
      name = std::string(expr.substr(0, d));
      def = std::string(expr.substr(d + 2));
      has_default = true;
    }
    while (!name.empty() && name.back() == ' ') name.pop_back();
    while (!name.empty() && name.front() == ' ') name.erase(0, 1);
    const char* v = std::getenv(name.c_str());
    if (v) out.append(v);
    else if (has_default) out.append(def);
    else return Error{"can't find environment variable " + name};
    pos = end + 2;
  }
}

}  // namespace holdfast
