-- wrk script for the jwt-auth scenario: the 10,000-route scenario's routed
-- path and host, each request carrying the next of the tokens in
-- BENCH_TOKENS (one per line), so that a run sends every token in turn.
-- With BENCH_PACE_MS set (the paced runs), every connection waits that
-- long between requests, as paced.lua does.
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do
  tokens[#tokens + 1] = "Bearer " .. line
end
local n, i = #tokens, 0
local path = os.getenv("BENCH_PATH") or "/api/4321/items"
local headers = {Host = os.getenv("BENCH_HOST") or "svc-4321.bench.local"}
request = function()
  i = i % n + 1
  headers["Authorization"] = tokens[i]
  return wrk.format("GET", path, headers)
end
local pace = tonumber(os.getenv("BENCH_PACE_MS") or "")
if pace then
  delay = function()
    return pace
  end
end
dofile(os.getenv("BENCH_REPORT"))
