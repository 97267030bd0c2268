// mocking (priority 10900): answers with a configured example (or a value
// generated from a JSON schema) without contacting the upstream. Variables
// in the body and header values are resolved per request and numbers are
// printed as APISIX (lua-cjson) prints them.
#include <fmt/format.h>

#include <boost/json.hpp>
#include <cmath>

#include "plugins/common.h"

namespace holdfast::plugins {
namespace {

double as_double(const json::value& v) {
  if (v.is_int64()) return static_cast<double>(v.as_int64());
  if (v.is_uint64()) return static_cast<double>(v.as_uint64());
  return v.as_double();
}

// lua-cjson's encoder: "/" escaped as "\/", numbers as lua_number.
void cjson_string(std::string_view s, std::string& out) {
  out += '"';
  for (char ch : s) {
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '/':
        out += "\\/";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20)
          out += fmt::format("\\u{:04x}", static_cast<unsigned char>(ch));
        else
          out += ch;
    }
  }
  out += '"';
}

void cjson_encode(const json::value& v, std::string& out) {
  switch (v.kind()) {
    case json::kind::object: {
      out += '{';
      bool first = true;
      for (const auto& kv : v.as_object()) {
        if (kv.value().is_null()) continue;  // a nil field is absent from a Lua table
        if (!first) out += ',';
        first = false;
        cjson_string(kv.key(), out);
        out += ':';
        cjson_encode(kv.value(), out);
      }
      out += '}';
      return;
    }
    case json::kind::array: {
      // lua-cjson encodes an empty table as an object.
      if (v.as_array().empty()) {
        out += "{}";
        return;
      }
      out += '[';
      bool first = true;
      for (const auto& e : v.as_array()) {
        if (!first) out += ',';
        first = false;
        cjson_encode(e, out);
      }
      out += ']';
      return;
    }
    case json::kind::string:
      cjson_string(v.as_string(), out);
      return;
    case json::kind::bool_:
      out += v.as_bool() ? "true" : "false";
      return;
    case json::kind::null:
      out += "null";
      return;
    default:
      out += lua_number(v);
      return;
  }
}

int64_t random_int(int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(rng()() % static_cast<uint64_t>(hi - lo + 1));
}

// APISIX's gen_by_property: an `example` is used only when its type fits the
// property's type, otherwise a random value of that type; objects and
// arrays never take an example.
json::value gen_by_property(const json::value& schema, int depth);

json::value gen_object(const json::object& s, int depth) {
  json::object o;
  if (auto p = s.find("properties"); p != s.end() && p->value().is_object())
    for (const auto& kv : p->value().as_object())
      o[kv.key()] = gen_by_property(kv.value(), depth + 1);
  return o;
}

json::value gen_by_property(const json::value& schema, int depth) {
  if (!schema.is_object() || depth > 16) return nullptr;
  const auto& s = schema.as_object();
  std::string type;
  if (auto t = s.find("type"); t != s.end() && t->value().is_string())
    type = std::string(t->value().as_string());
  for (auto& ch : type) ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
  const json::value* example = s.if_contains("example");
  if (type == "object") return gen_object(s, depth);
  if (type == "array") {
    auto items = s.find("items");
    if (items == s.end()) return nullptr;
    json::array a;
    for (int64_t i = random_int(1, 3); i > 0; --i)
      a.push_back(gen_by_property(items->value(), depth + 1));
    return a;
  }
  if (type == "string") {
    if (example && example->is_string()) return *example;
    std::string out(static_cast<size_t>(random_int(1, 10)), 'a');
    for (auto& ch : out) ch = static_cast<char>(random_int('a', 'z'));
    return json::value(out);
  }
  if (type == "number") {
    if (example && example->is_number()) return *example;
    return static_cast<double>(rng()() >> 11) / 9007199254740992.0 * 10000;
  }
  if (type == "integer") {
    if (example && example->is_number()) return std::floor(as_double(*example));
    return random_int(1, 10000);
  }
  if (type == "boolean") {
    if (example && example->is_bool()) return *example;
    return random_int(0, 1) == 1;
  }
  return nullptr;
}

class Mocking final : public Plugin {
 public:
  double delay = 0;
  int status = 200;
  std::string content_type = "application/json;charset=utf8";
  std::optional<std::string> example;
  json::object schema;
  bool mock_header = true;
  HeaderList headers;

  Action access(RequestCtx& ctx) const override {
    ctx.delay_seconds = delay;
    std::string body;
    if (example) {
      body = *example;
    } else {
      // A new value per request, as APISIX generates one.
      cjson_encode(gen_object(schema, 0), body);
    }
    ctx.respond(status, router::resolve_var(body, ctx), content_type);
    if (mock_header) ctx.add_reply_header("x-mock-by", "APISIX/3.18.0");
    for (const auto& [k, v] : headers) ctx.add_reply_header(k, router::resolve_var(v, ctx));
    return Action::respond;
  }
};

// Every field of APISIX's schema is implemented.
const FieldRules kFields{.implemented = {"delay", "response_status", "content_type", "response_example",
                                         "response_schema", "with_mock_header", "response_headers"}};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<Mocking>();
  Checker c(conf, "mocking");
  c.only(kFields.implemented);
  p->delay = static_cast<double>(c.integer("delay", false, 0).value_or(0));
  p->status = static_cast<int>(c.integer("response_status", false, 100).value_or(200));
  p->content_type = c.str("content_type").value_or(p->content_type);
  p->mock_header = c.boolean("with_mock_header").value_or(true);
  p->example = c.str("response_example");
  if (const json::object* schema = c.object("response_schema")) p->schema = *schema;
  if (!c.failed() && !p->example && !c.has("response_schema"))
    c.fail("value should match at least one schema, but matches none");
  if (const json::object* h = c.object("response_headers")) {
    if (h->empty() && !c.failed())
      c.fail(
          "property \"response_headers\" validation failed: expect object to have at least 1 "
          "properties");
    for (const auto& kv : *h) {
      if (kv.key().empty() || kv.key().find(':') != std::string_view::npos) {
        c.fail(
            fmt::format("property \"response_headers\" validation failed: additional properties "
                        "forbidden, found {}",
                        std::string_view(kv.key())));
        break;
      }
      std::string value;
      if (kv.value().is_string())
        value = std::string(kv.value().as_string());
      else if (kv.value().is_number())
        value = lua_number(kv.value());
      else {
        c.fail(fmt::format(
            "property \"response_headers\" validation failed: property \"{}\" validation failed: "
            "value should match only one schema, but matches none",
            std::string_view(kv.key())));
        break;
      }
      p->headers.emplace_back(std::string(kv.key()), std::move(value));
    }
  }
  // APISIX's check_schema: the media type before any ';' must be one it can
  // produce.
  if (!c.failed()) {
    std::string_view ct = p->content_type;
    if (size_t semi = ct.find(';'); semi != std::string_view::npos) ct = ct.substr(0, semi);
    if (ct != "application/xml" && ct != "application/json" && ct != "text/plain" &&
        ct != "text/html" && ct != "text/xml")
      c.fail("unsupported content type!");
  }
  return done(c, p);
}

}  // namespace

extern const PluginDef kMocking{"mocking", 10900, false, &create, nullptr, nullptr, &kFields};

}  // namespace holdfast::plugins
