// holdfast: entry point. Parses flags and config.yaml, then runs the role it
// names: workers for proxy traffic, and on the control thread the config
// source (file or etcd), the Admin API, the status endpoint and signals.
#include <sys/resource.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>
#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "admin/admin_api.h"
#include "cli/snapshot_cli.h"
#include "config/etcd/etcd_source.h"
#include "config/fallback/supervisor.h"
#include "config/file/file_source.h"
#include "config/manager.h"
#include "core/budgets.h"
#include "core/config.h"
#include "core/data_encryption.h"
#include "core/io_backend.h"
#include "core/log.h"
#include "dns/resolver.h"
#include "http/control_server.h"
#include "plugins/log_sink.h"
#include "plugins/prometheus_metrics.h"
#include "plugins/shared_dict.h"
#include "proxy/access_log.h"
#include "proxy/health_checker.h"
#include "proxy/prometheus_export.h"
#include "proxy/side_request.h"
#include "proxy/worker.h"
#include "tls/cert_metrics.h"
#include "tls/server_context.h"

using namespace holdfast;
namespace asio = boost::asio;
namespace json = boost::json;

namespace {

void usage() {
  std::puts(
      "Usage: holdfast [-c CONFIG] [-t] [--help] [--version]\n"
      "\n"
      "  -c, --config FILE  config.yaml to use (default: conf/config.yaml)\n"
      "  -t, --test         check config.yaml (and the standalone file when the\n"
      "                     config provider is yaml/json), print the first error, exit\n"
      "  -h, --help         this help\n"
      "  -v, --version      print the version\n"
      "\n"
      "       holdfast snapshot inspect|verify|pull|push -c CONFIG   (S3 fallback snapshots; --help for details)\n"
      "\n"
      "Roles (deployment.role): traditional (proxy + Admin API, config from etcd),\n"
      "control_plane (Admin API only), data_plane (proxy; config from etcd, or from\n"
      "apisix.yaml / apisix.json beside config.yaml with config_provider yaml/json).\n");
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
  if (cfg->ssl.enable) {
    // What the TLS listener is made from (e.g. a cipher list OpenSSL selects nothing from).
    if (auto sc = tls::ServerContext::create(cfg->ssl); !sc) {
      std::fprintf(stderr, "holdfast: %s: %s\nholdfast: configuration test failed\n", path.c_str(), sc.error().c_str());
      return 1;
    }
  }
  // With fallback_cp, a yaml/json data plane reads S3, not a local file.
  if (standalone(*cfg) && !cfg->fallback.enabled) {
    std::string file = cfg->standalone_path();
    auto doc = config::read_standalone(file, cfg->config_provider == "yaml");
    if (!doc) {
      std::fprintf(stderr, "holdfast: %s\nholdfast: configuration test failed\n", doc.error().c_str());
      return 1;
    }
    log::set_level(log::Level::error);
    snapshot::CompileOptions opts;
    opts.router = cfg->router;
    opts.enabled_plugins = cfg->plugins;
    opts.trusted_certificate = cfg->ssl.trusted_certificate;
    opts.keyring = &cfg->keyring;
    auto snap = snapshot::compile_snapshot(*doc, opts);
    if (!snap) {
      std::fprintf(stderr, "holdfast: %s: %s\nholdfast: configuration test failed\n", file.c_str(), snap.error().c_str());
      return 1;
    }
    if ((*snap)->skipped) {
      std::fprintf(stderr, "holdfast: %s: %s\nholdfast: configuration test failed\n", file.c_str(),
                   (*snap)->first_error.c_str());
      return 1;
    }
    for (const auto& w : (*snap)->warnings)
      std::fprintf(stderr, "holdfast: warning: %s: %s\n", file.c_str(), w.c_str());
    // SSL objects that would be left out fail the test as skipped resources do.
    const tls::CertTable& certs = *(*snap)->certificates;
    for (const auto& w : certs.warnings())
      std::fprintf(stderr, "holdfast: warning: %s: ssl %s: %s\n", file.c_str(), w.ssl_id.c_str(), w.reason.c_str());
    for (const auto& p : certs.problems())
      std::fprintf(stderr, "holdfast: %s: ssl %s: %s\n", file.c_str(), p.ssl_id.c_str(), p.reason.c_str());
    if (!certs.problems().empty()) {
      std::fprintf(stderr, "holdfast: configuration test failed\n");
      return 1;
    }
    std::fprintf(stderr, "holdfast: %s: %zu routes, %zu upstreams, %zu consumers, %zu ssls\n", file.c_str(),
                 (*snap)->routes.size(), (*snap)->upstreams.size(), (*snap)->consumers.by_name.size(),
                 certs.objects().size());
  }
  std::fprintf(stderr, "holdfast: configuration file %s test is successful\n", path.c_str());
  return 0;
}

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// How the start-up line names the fallback stores: "S3", "S3 and Azure Blob".
std::string fallback_store_names(const FallbackConfig& f) {
  std::string out;
  for (size_t i = 0; i < f.stores.size(); ++i) {
    out += i == 0 ? "" : i + 1 == f.stores.size() ? " and " : ", ";
    out += f.stores[i] == "azure_blob" ? "Azure Blob" : f.stores[i] == "gcs" ? "GCS" : "S3";
  }
  return out;
}

// GET /status and /status/ready: what configuration is loaded, from where.
http::ControlResponse status_response(const http::ControlRequest& req, const NodeConfig& cfg,
                                      const config::Manager& mgr, const config::fallback::Supervisor* supervisor) {
  const config::EtcdSource* etcd = supervisor ? supervisor->etcd() : nullptr;
  http::ControlResponse r;
  auto snap = mgr.current();
  bool serves_traffic = cfg.role != "control_plane";
  bool ready = !serves_traffic || snap != nullptr;
  json::object o;
  o["role"] = cfg.role;
  o["config_loaded"] = snap != nullptr;
  if (snap) {
    o["source"] = snap->source;
    o["revision"] = snap->revision;
    o["version"] = snap->version;
    o["routes"] = snap->routes.size();
    o["age_seconds"] = (unix_ms() - snap->applied_unix_ms) / 1000;
    o["skipped_resources"] = snap->skipped;
  }
  if (etcd) o["etcd"] = etcd->reachable() ? "reachable" : "unreachable";
  if (supervisor && cfg.fallback.enabled) o["stores"] = supervisor->stores_status();
  if (req.path == "/status") {
    o["status"] = "ok";
  } else if (req.path == "/status/ready") {
    o["status"] = ready ? "ok" : "error";
    if (!ready) o["error"] = "no configuration loaded";
    r.status = ready ? 200 : 503;
  } else {
    r.status = 404;
    r.body = "{\"error_msg\":\"not found\"}\n";
    return r;
  }
  r.body = json::serialize(o) + "\n";
  return r;
}

// How long the control thread and the workers may take to finish their
// work once everything is stopped, before the process exits without cleanup.
constexpr std::chrono::seconds kExitGrace{5};

}  // namespace

int main(int argc, char** argv) {
  // Before anything creates an io_context: io_uring or the epoll build.
  if (auto rc = io_backend::choose(argv)) return *rc;
  if (argc > 1 && std::string(argv[1]) == "snapshot") return cli::snapshot_main(argc - 2, argv + 2);
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
  io_backend::log_choice();

  // The keyed stores of the rate-limiting plugins live for the whole process
  // and are sized once, before any plugin is built.
  plugins::configure_shared_dicts(cfg.lua_shared_dict);

  // A backup node (fallback_cp.mode: write) opens no proxy listener unless asked.
  const bool proxy = cfg.role != "control_plane" && (!cfg.fallback.write || cfg.fallback.proxy);
  const bool admin = cfg.role == "traditional" || cfg.role == "control_plane";
  const bool use_file = standalone(cfg) && !cfg.fallback.enabled;
  const bool use_supervisor = !use_file && (cfg.role != "control_plane" || cfg.fallback.write);

  // Each connection costs up to two descriptors (client + upstream): the
  // hard limit, or nginx_config.worker_rlimit_nofile when it is set.
  if (rlimit rl{}; getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rlim_t want = cfg.rlimit_nofile > 0 ? std::min<rlim_t>(cfg.rlimit_nofile, rl.rlim_max) : rl.rlim_max;
    if (want != rl.rlim_cur) {
      rl.rlim_cur = want;
      setrlimit(RLIMIT_NOFILE, &rl);
    }
  }
  auto access_log = std::make_shared<proxy::AccessLog>(cfg.access_log);
  std::vector<std::unique_ptr<proxy::Worker>> workers;
  asio::io_context control;
  std::unique_ptr<http::ControlServer> status_server, admin_server, export_server;
  // One TLS context for every worker (and so one session cache); each
  // handshake takes its certificate from the snapshot of its worker.
  std::unique_ptr<tls::ServerContext> tls_server;
  std::shared_ptr<asio::ssl::context> tls_ctx;
  if (proxy && cfg.ssl.enable && !cfg.ssl.listen.empty()) {
    tls::ServerContext::Options opts;
    opts.http2 = cfg.http2.enable;
    auto sc = tls::ServerContext::create(cfg.ssl, std::move(opts));
    if (!sc) {
      log::error("apisix.ssl: {}", sc.error());
      return 1;
    }
    tls_server = std::move(*sc);
    SSL_CTX_up_ref(tls_server->native());  // asio's context frees its own reference
    tls_ctx = std::make_shared<asio::ssl::context>(tls_server->native());
  }
  try {
    if (proxy) {
      for (int i = 0; i < cfg.workers; ++i) {
        workers.push_back(std::make_unique<proxy::Worker>(i, cfg, access_log));
        workers.back()->listen(cfg.node_listen);
        if (tls_ctx) workers.back()->listen_tls(cfg.ssl.listen, tls_ctx);
      }
    }
  } catch (const std::exception& e) {
    log::error("cannot listen on apisix.node_listen / apisix.ssl.listen: {}", e.what());
    return 1;
  }

  // APISIX's prometheus export server runs where the plugin is enabled and
  // the node proxies; the plugin records nothing where nobody can read it.
  const bool prometheus_enabled =
      cfg.plugins.empty() || std::find(cfg.plugins.begin(), cfg.plugins.end(), "prometheus") != cfg.plugins.end();
  const bool export_metrics = proxy && prometheus_enabled && cfg.prometheus.export_server;
  if (proxy && prometheus_enabled && !cfg.prometheus.export_server)
    log::warn("plugin_attr.prometheus.enable_export_server: false is not supported (APISIX then serves the "
              "metrics through its public-api plugin, which Holdfast does not have): the prometheus plugin records nothing");
  if (export_metrics) {
    plugins::prometheus::Settings ps;
    ps.prefix = cfg.prometheus.metric_prefix;
    if (!cfg.prometheus.default_buckets.empty()) ps.buckets = cfg.prometheus.default_buckets;
    plugins::prometheus::init(static_cast<int>(workers.size()), std::move(ps));
  }

  proxy::HealthChecker health(control);
  config::Manager manager(cfg, [&](std::shared_ptr<const snapshot::Snapshot> s) {
    for (auto& w : workers) w->publish(s);
    health.update(s);
  });
  // Node names are resolved on the resolver's thread, never on a worker;
  // new addresses come to the workers in a new snapshot.
  dns::Resolver resolver(control, cfg.dns);
  resolver.on_change([&] { manager.refresh(); });
  manager.set_resolver(&resolver);

  std::unique_ptr<config::FileSource> file;
  std::unique_ptr<config::fallback::Supervisor> supervisor;
  std::unique_ptr<config::EtcdClient> admin_etcd;
  std::unique_ptr<admin::AdminApi> admin_api;
  if (use_file) {
    file = std::make_unique<config::FileSource>(control, manager, cfg.standalone_path(), cfg.config_provider == "yaml");
  } else if (use_supervisor) {
    supervisor = std::make_unique<config::fallback::Supervisor>(control, cfg, manager);
  }
  config::EtcdSource* etcd_source = supervisor ? supervisor->etcd() : nullptr;
  // Holdfast's own metrics: the status endpoint's /metrics, and after
  // APISIX's series on the prometheus export server.
  auto holdfast_metrics = [&] {
    auto snap = manager.current();
    int64_t age = snap ? (unix_ms() - snap->applied_unix_ms) / 1000 : -1;
    std::string body = supervisor ? supervisor->prometheus(snap ? snap->source : "", age) : std::string();
    body += fmt::format("holdfast_config_loaded {}\nholdfast_config_rejected_total {}\n", snap ? 1 : 0, manager.rejected());
    body += plugins::shared_dicts_prometheus();
    body += plugins::logsink::prometheus();
    body += proxy::side_requests_prometheus();
    if (snap && snap->certificates) body += tls::expiry_prometheus(*snap->certificates);
    if (tls_server) body += tls_server->prometheus();
    return body;
  };
  try {
    if (admin) {
      admin_etcd = std::make_unique<config::EtcdClient>(control.get_executor(), config::EtcdSource::options_from(cfg.etcd));
      admin_api = std::make_unique<admin::AdminApi>(cfg, *admin_etcd);
      admin_server = std::make_unique<http::ControlServer>(control, "admin", [&](const http::ControlRequest& r) {
        return admin_api->handle(r);
      }, budgets::kMaxAdminBodyBytes);
      asio::co_spawn(control, admin_api->publish_plugins_at_start(), asio::detached);
      admin_server->listen(cfg.admin.listen);
      admin_server->start();
      log::info("Admin API listening on {}:{}", cfg.admin.listen.ip, admin_server->port());
    }
    if (export_metrics) {
      const std::string uri = cfg.prometheus.export_uri;
      export_server = std::make_unique<http::ControlServer>(control, "prometheus", [&, uri](const http::ControlRequest& r)
                                                                                       -> asio::awaitable<http::ControlResponse> {
        http::ControlResponse m;
        if (r.path != uri || (r.method != "GET" && r.method != "HEAD")) {
          m.status = 404;
          m.body = "{\"error_msg\":\"404 Route Not Found\"}\n";
          co_return m;
        }
        m.headers = {{"Content-Type", "text/plain; version=0.0.4"}};
        auto snap = manager.current();
        proxy::ExportInputs in;
        in.workers = &workers;
        in.snapshot = snap.get();
        in.etcd_configured = cfg.config_provider == "etcd";
        in.etcd = etcd_source;
        m.body = proxy::prometheus_page(in, holdfast_metrics());
        co_return m;
      });
      export_server->listen(cfg.prometheus.export_addr);
      export_server->start();
      log::info("prometheus export server on {}:{}{}", cfg.prometheus.export_addr.ip, export_server->port(), uri);
    }
    if (cfg.status_listen.port) {
      status_server = std::make_unique<http::ControlServer>(control, "status", [&](const http::ControlRequest& r)
                                                                                   -> asio::awaitable<http::ControlResponse> {
        if (r.path == "/metrics") {
          http::ControlResponse m;
          m.headers = {{"Content-Type", "text/plain; version=0.0.4"}};
          m.body = holdfast_metrics();
          co_return m;
        }
        co_return status_response(r, cfg, manager, supervisor.get());
      });
      status_server->listen(cfg.status_listen);
      status_server->start();
      log::info("status endpoint on {}:{} (/status, /status/ready)", cfg.status_listen.ip, status_server->port());
    }
  } catch (const std::exception& e) {
    log::error("cannot listen: {}", e.what());
    return 1;
  }

  if (file) file->start();
  if (supervisor) supervisor->start();
  for (auto& w : workers) w->start();
  if (proxy) {
    for (const auto& l : cfg.node_listen) log::info("listening on {}:{}", l.ip, l.port);
    if (tls_ctx)
      for (const auto& l : cfg.ssl.listen) log::info("listening on {}:{} (TLS)", l.ip, l.port);
  }
  log::info("holdfast {} started: role {}, config provider {}, {} worker(s){}", HOLDFAST_VERSION, cfg.role,
            cfg.config_provider, workers.size(),
            !cfg.fallback.enabled ? ""
            : cfg.fallback.write  ? ", backup node (fallback_cp.mode: write) to " + fallback_store_names(cfg.fallback)
                                  : ", fallback on " + fallback_store_names(cfg.fallback));

  // Housekeeping on the control thread: the access log is written here
  // (never from a worker) and retired snapshots are handed to the reaper.
  bool exiting = false;
  asio::steady_timer log_timer(control);
  std::function<void()> flush_log = [&] {
    access_log->flush();
    plugins::logsink::service(control.get_executor());  // the logger plugins' batches
    manager.reap();
    log_timer.expires_after(std::chrono::milliseconds(200));
    log_timer.async_wait([&](boost::system::error_code ec) { if (!ec && !exiting) flush_log(); });
  };
  flush_log();  // also frees retired snapshots once workers let go of them

  // The last step of a shutdown. Everything on the control thread and on
  // the workers is stopped, and their io_contexts then run until no work is
  // left: every coroutine ends before what it refers to is destroyed, and no
  // operation is left queued on a closed socket (Asio's io_uring backend
  // would destroy it with the io_context, after its socket service). The
  // watchdog bounds this.
  std::mutex exit_mutex;
  std::condition_variable exit_cv;
  bool control_done = false, forced = false;
  std::thread watchdog;
  auto stop_everything = [&] {
    exiting = true;
    for (auto& w : workers) w->stop();
    if (status_server) status_server->stop();
    if (export_server) export_server->stop();
    if (admin_server) admin_server->stop();
    if (admin_api) admin_api->stop();
    if (admin_etcd) admin_etcd->cancel();
    if (file) file->stop();
    if (supervisor) supervisor->stop();
    health.stop();
    log_timer.cancel();
    watchdog = std::thread([&] {
      std::unique_lock lk(exit_mutex);
      if (exit_cv.wait_for(lk, kExitGrace, [&] { return control_done; })) return;
      forced = true;
      control.stop();
    });
  };

  asio::signal_set signals(control, SIGTERM, SIGINT);
  asio::steady_timer drain_timer(control);
  int64_t drain_deadline = 0;
  std::function<void()> poll_drain = [&] {
    bool all_idle = true;
    for (auto& w : workers) all_idle = all_idle && w->idle();
    if (all_idle || transport::now_ms() >= drain_deadline) {
      if (!all_idle) log::warn("drain deadline reached; closing remaining connections");
      stop_everything();
      return;
    }
    drain_timer.expires_after(std::chrono::milliseconds(50));
    drain_timer.async_wait([&](boost::system::error_code ec) { if (!ec) poll_drain(); });
  };
  signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;
    log::info("received {}, draining (deadline {}s)", sig == SIGTERM ? "SIGTERM" : "SIGINT", cfg.shutdown_timeout);
    // Shutdown order: stop accepting, drain in-flight requests, stop watchers, exit.
    if (admin_server) admin_server->stop();
    for (auto& w : workers) w->drain();
    if (supervisor) supervisor->stop();
    if (admin_etcd) admin_etcd->cancel();
    // What the logger plugins still hold leaves now (once, no retries wait).
    plugins::logsink::flush_all(control.get_executor());
    drain_deadline = transport::now_ms() + static_cast<int64_t>(cfg.shutdown_timeout * 1000);
    poll_drain();
  });
  control.run();
  {
    std::lock_guard lk(exit_mutex);
    control_done = true;
  }
  exit_cv.notify_all();
  if (watchdog.joinable()) watchdog.join();
  const auto workers_until = std::chrono::steady_clock::now() + kExitGrace;
  for (auto& w : workers) {
    if (w->wait_stopped(std::chrono::duration_cast<std::chrono::milliseconds>(
            std::max(workers_until - std::chrono::steady_clock::now(), std::chrono::steady_clock::duration::zero()))))
      continue;
    forced = true;
    w->abort();
  }
  for (auto& w : workers) w->join();
  access_log->flush();
  if (forced) {
    // Something still had work pending: destroying the io_contexts now
    // could run its handlers against freed objects. Exit without cleanup.
    log::warn("holdfast stopped without cleanup: work still pending {}s after shutdown", kExitGrace.count());
    std::fflush(nullptr);
    std::_Exit(0);
  }
  log::info("holdfast stopped");
  return 0;
}
