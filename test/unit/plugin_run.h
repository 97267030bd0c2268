// Runs one plugin's rewrite hook on a request built from a target, as the
// proxy would (decoded $uri from http/uri.h, the plugin's name recorded).
#pragma once
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "http/uri.h"
#include "plugins/plugin.h"

namespace holdfast::test {

struct PluginRun {
  http::RequestHead head;
  std::string target;
  plugins::RequestCtx ctx;
  plugins::Action action = plugins::Action::next;

  PluginRun(const char* plugin, const char* conf, std::string request_target) : target(std::move(request_target)) {
    const plugins::PluginDef* def = plugins::find_plugin(plugin);
    auto p = def->create(boost::json::parse(conf).as_object(), "test");
    if (!p) {
      ADD_FAILURE() << p.error();
      return;
    }
    head.method = "GET";
    head.target = target;
    size_t q = target.find('?');
    head.path = std::string_view(target).substr(0, q);
    if (q != std::string::npos) head.query = std::string_view(target).substr(q + 1);
    ctx.req = &head;
    ctx.uri = http::normalize_path(head.path).value_or("");
    ctx.plugin = def->name;
    action = (*p)->rewrite(ctx);
    ctx.plugin = nullptr;
  }
};

}  // namespace holdfast::test
