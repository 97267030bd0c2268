-- wrk request hook for the 10,000-route scenario: a routed path, a host and an API key.
wrk.headers["Host"] = os.getenv("BENCH_HOST") or "svc-4321.bench.local"
wrk.headers["apikey"] = "bench-key"
wrk.path = os.getenv("BENCH_PATH") or "/api/4321/items"
dofile(os.getenv("BENCH_REPORT"))
