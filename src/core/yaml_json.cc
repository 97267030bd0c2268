#include "core/yaml_json.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstdlib>

namespace holdfast {
namespace {

boost::json::value scalar(const YAML::Node& n) {
  const std::string& s = n.Scalar();
  if (n.Tag() != "?") return boost::json::value(s);  // quoted: always a string
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
  return boost::json::value(s);
}

boost::json::value convert(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Scalar:
      return scalar(n);
    case YAML::NodeType::Sequence: {
      boost::json::array a;
      for (const auto& c : n) a.push_back(convert(c));
      return a;
    }
    case YAML::NodeType::Map: {
      boost::json::object o;
      for (const auto& kv : n) o[kv.first.as<std::string>()] = convert(kv.second);
      return o;
    }
  }
  return nullptr;
}

}  // namespace

Result<boost::json::value> yaml_to_json(std::string_view text) {
  try {
    YAML::Node root = YAML::Load(std::string(text));
    return convert(root);
  } catch (const YAML::Exception& e) {
    return Error{std::string("invalid YAML: ") + e.what()};
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
