// mocking (priority 10900): answers with a configured example (or a value
// generated from a JSON schema) without contacting the upstream.
#include <boost/json.hpp>

#include "plugins/common.h"

namespace holdfast::plugins {
namespace {

json::value from_schema(const json::value& schema, int depth = 0) {
  if (!schema.is_object() || depth > 8) return nullptr;
  const auto& s = schema.as_object();
  if (auto e = s.find("example"); e != s.end()) return e->value();
  std::string type = s.contains("type") && s.at("type").is_string() ? std::string(s.at("type").as_string()) : "object";
  if (type == "object") {
    json::object o;
    if (auto p = s.find("properties"); p != s.end() && p->value().is_object())
      for (const auto& kv : p->value().as_object()) o[kv.key()] = from_schema(kv.value(), depth + 1);
    return o;
  }
  if (type == "array") {
    json::array a;
    if (auto i = s.find("items"); i != s.end()) a.push_back(from_schema(i->value(), depth + 1));
    return a;
  }
  if (type == "string") return "string";
  if (type == "integer") return 1;
  if (type == "number") return 1.5;
  if (type == "boolean") return true;
  return nullptr;
}

class Mocking final : public Plugin {
 public:
  double delay = 0;
  int status = 200;
  std::string content_type = "application/json;charset=utf8";
  std::string body;
  bool mock_header = true;
  HeaderList headers;

  Action access(RequestCtx& ctx) const override {
    ctx.delay_seconds = delay;
    ctx.respond(status, body, content_type);
    if (mock_header) ctx.add_reply_header("x-mock-by", "APISIX/3.18.0");
    for (const auto& [k, v] : headers) ctx.add_reply_header(k, v);
    return Action::respond;
  }
};

Result<std::shared_ptr<const Plugin>> create(const json::object& conf, const std::string&) {
  auto p = std::make_shared<Mocking>();
  Checker c(conf, "mocking");
  c.only({"delay", "response_status", "content_type", "response_example", "response_schema", "with_mock_header",
          "response_headers"});
  p->delay = static_cast<double>(c.integer("delay", false, 0).value_or(0));
  p->status = static_cast<int>(c.integer("response_status", false, 1).value_or(200));
  p->content_type = c.str("content_type").value_or(p->content_type);
  p->mock_header = c.boolean("with_mock_header").value_or(true);
  if (auto ex = c.str("response_example")) p->body = *ex;
  else if (const json::object* schema = c.object("response_schema")) p->body = json::serialize(from_schema(*schema));
  else if (!c.failed()) c.fail("value should match only one schema, but matches none (response_example or response_schema)");
  if (const json::object* h = c.object("response_headers")) {
    for (const auto& kv : *h) {
      if (!kv.value().is_string()) { c.fail("property \"response_headers\" validation failed: expected strings"); break; }
      p->headers.emplace_back(std::string(kv.key()), std::string(kv.value().as_string()));
    }
  }
  return done(c, p);
}

}  // namespace

extern const PluginDef kMocking{"mocking", 10900, false, &create, nullptr};

}  // namespace holdfast::plugins
