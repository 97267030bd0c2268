// Google Benchmark of route matching at 10, 1k and 100k routes (a mix of
// exact paths, prefixes and wildcard hosts, as in the 10k-route proxy bench).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "router/router.h"

using namespace holdfast;
using namespace holdfast::router;

namespace {

Router build(int n) {
  std::vector<RouteSpec> specs;
  for (int i = 0; i < n; ++i) {
    RouteSpec s;
    s.index = static_cast<uint32_t>(i);
    switch (i % 3) {
      case 0: s.uris = {"/exact/" + std::to_string(i)}; break;
      case 1: s.uris = {"/api/" + std::to_string(i) + "/*"}; break;
      default:
        s.uris = {"/*"};
        s.hosts = {"*.svc-" + std::to_string(i) + ".bench.local"};
    }
    specs.push_back(std::move(s));
  }
  return std::move(*Router::build(RouterKind::radixtree_host_uri, specs));
}

void match_bench(benchmark::State& state, const char* kind) {
  const int n = static_cast<int>(state.range(0));
  Router r = build(n);
  const int target = (n / 2) - ((n / 2) % 3) + (std::string(kind) == "exact" ? 0 : std::string(kind) == "prefix" ? 1 : 2);
  std::string path, host = "client.example.org";
  if (std::string(kind) == "exact") path = "/exact/" + std::to_string(target);
  else if (std::string(kind) == "prefix") path = "/api/" + std::to_string(target) + "/items/42";
  else { path = "/anything"; host = "a.svc-" + std::to_string(target) + ".bench.local"; }
  IpAddr ip = *IpAddr::parse("127.0.0.1");
  MatchInput in;
  in.method = "GET";
  in.path = path;
  in.host = host;
  in.host_header = host;
  in.remote_addr = &ip;
  for (auto _ : state) {
    int64_t idx = r.match(in);
    benchmark::DoNotOptimize(idx);
    if (idx != target) state.SkipWithError("wrong route matched");
  }
}

}  // namespace

BENCHMARK_CAPTURE(match_bench, exact, "exact")->Arg(10)->Arg(1000)->Arg(100000);
BENCHMARK_CAPTURE(match_bench, prefix, "prefix")->Arg(10)->Arg(1000)->Arg(100000);
BENCHMARK_CAPTURE(match_bench, wildcard_host, "host")->Arg(10)->Arg(1000)->Arg(100000);
BENCHMARK_MAIN();
