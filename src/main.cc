// holdfast: entry point. Parses flags and config.yaml, starts the workers
// and the control loop (config sources, signals), and drains on shutdown.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <sys/resource.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "config/file/file_source.h"
#include "config/manager.h"
#include "core/config.h"
#include "core/log.h"
#include "http/access_log.h"
#include "http/health_checker.h"
#include "http/worker.h"

using namespace holdfast;
namespace asio = boost::asio;

namespace {

void usage() {
  std::puts(
      "Usage: holdfast [-c CONFIG] [-t] [--help] [--version]\n"
      "\n"
      "  -c, --config FILE  config.yaml to use (default: conf/config.yaml)\n"
      "  -t, --test         check config.yaml (and the standalone file when the\n"
      "                     config provider is yaml/json), print the first error, exit\n"
      "  -h, --help         this help\n"
      "  -v, --version      print the version\n");
}

log::Level parse_level(const std::string& s) {
  if (s == "debug") return log::Level::debug;
  if (s == "info" || s == "notice") return log::Level::info;
  if (s == "warn") return log::Level::warn;
  return log::Level::error;
}

bool standalone(const NodeConfig& cfg) {
  return cfg.role == "data_plane" && (cfg.config_provider == "yaml" || cfg.config_provider == "json");
}

int test_config(const std::string& path) {
  auto cfg = load_node_config(path);
  if (!cfg) {
    std::fprintf(stderr, "holdfast: %s: %s\nholdfast: configuration test failed\n", path.c_str(), cfg.error().c_str());
    return 1;
  }
  for (const auto& w : cfg->warnings) std::fprintf(stderr, "holdfast: warning: %s\n", w.c_str());
  if (standalone(*cfg)) {
    std::string file = cfg->standalone_path();
    auto doc = config::read_standalone(file, cfg->config_provider == "yaml");
    if (!doc) {
      std::fprintf(stderr, "holdfast: %s\nholdfast: configuration test failed\n", doc.error().c_str());
      return 1;
    }
    log::set_level(log::Level::error);
    config::CompileOptions opts;
    opts.router = cfg->router;
    opts.enabled_plugins = cfg->plugins;
    auto snap = config::compile_snapshot(*doc, opts);
    if (!snap) {
      std::fprintf(stderr, "holdfast: %s: %s\nholdfast: configuration test failed\n", file.c_str(), snap.error().c_str());
      return 1;
    }
    if ((*snap)->skipped) {
      std::fprintf(stderr, "holdfast: %s: %s\nholdfast: configuration test failed\n", file.c_str(),
                   (*snap)->first_error.c_str());
      return 1;
    }
    std::fprintf(stderr, "holdfast: %s: %zu routes, %zu upstreams, %zu consumers\n", file.c_str(),
                 (*snap)->routes.size(), (*snap)->upstreams.size(), (*snap)->consumers.size());
  }
  std::fprintf(stderr, "holdfast: configuration file %s test is successful\n", path.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path = "conf/config.yaml";
  bool test = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") { usage(); return 0; }
    if (a == "-v" || a == "--version") { std::printf("holdfast %s\n", HOLDFAST_VERSION); return 0; }
    if (a == "-t" || a == "--test") { test = true; continue; }
    if ((a == "-c" || a == "--config") && i + 1 < argc) { config_path = argv[++i]; continue; }
    std::fprintf(stderr, "holdfast: unknown argument %s\n", a.c_str());
    usage();
    return 2;
  }
  if (test) return test_config(config_path);

  auto loaded = load_node_config(config_path);
  if (!loaded) {
    std::fprintf(stderr, "holdfast: %s: %s\n", config_path.c_str(), loaded.error().c_str());
    return 1;
  }
  const NodeConfig cfg = std::move(*loaded);
  log::set_json(cfg.log_json);
  log::set_level(parse_level(cfg.log_level));
  for (const auto& w : cfg.warnings) log::warn("{}: {}", config_path, w);
  if (!standalone(cfg)) {
    log::error("deployment.role {} with config_provider {} is not implemented yet; use role data_plane with "
               "config_provider yaml or json", cfg.role, cfg.config_provider);
    return 1;
  }

  // Each connection costs up to two descriptors (client + upstream).
  if (rlimit rl{}; getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  auto access_log = std::make_shared<http::AccessLog>(cfg.access_log);
  std::vector<std::unique_ptr<http::Worker>> workers;
  try {
    for (int i = 0; i < cfg.workers; ++i) {
      workers.push_back(std::make_unique<http::Worker>(i, cfg, access_log));
      workers.back()->listen(cfg.node_listen);
    }
  } catch (const std::exception& e) {
    log::error("cannot listen: {}", e.what());
    return 1;
  }

  asio::io_context control;
  http::HealthChecker health(control);
  config::Manager manager(cfg, [&](std::shared_ptr<const config::Snapshot> s) {
    for (auto& w : workers) w->publish(s);
    health.update(s);
  });
  config::FileSource file(control, manager, cfg.standalone_path(), cfg.config_provider == "yaml");
  file.start();
  for (auto& w : workers) w->start();
  for (const auto& l : cfg.node_listen) log::info("listening on {}:{}", l.ip, l.port);
  log::info("holdfast {} started: {} worker(s), role {}, config provider {}", HOLDFAST_VERSION, cfg.workers,
            cfg.role, cfg.config_provider);

  asio::signal_set signals(control, SIGTERM, SIGINT);
  asio::steady_timer drain_timer(control);
  int64_t drain_deadline = 0;
  std::function<void()> poll_drain = [&] {
    bool all_idle = true;
    for (auto& w : workers) all_idle = all_idle && w->idle();
    if (all_idle || http::now_ms() >= drain_deadline) {
      if (!all_idle) log::warn("drain deadline reached; closing remaining connections");
      for (auto& w : workers) w->stop();
      control.stop();
      return;
    }
    drain_timer.expires_after(std::chrono::milliseconds(50));
    drain_timer.async_wait([&](boost::system::error_code ec) { if (!ec) poll_drain(); });
  };
  signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;
    log::info("received {}, draining (deadline {}s)", sig == SIGTERM ? "SIGTERM" : "SIGINT", cfg.shutdown_timeout);
    for (auto& w : workers) w->drain();
    drain_deadline = http::now_ms() + static_cast<int64_t>(cfg.shutdown_timeout * 1000);
    poll_drain();
  });
  control.run();
  for (auto& w : workers) w->join();
  access_log->flush();
  log::info("holdfast stopped");
  return 0;
}
