-- wrk script: the 10,000-route scenario's request (keyauth.lua), paced as
-- paced.lua paces (PACE_MS between requests on each connection).
dofile(os.getenv("BENCH_KEYAUTH"))
local pace = tonumber(os.getenv("PACE_MS") or "10")
delay = function()
  return pace
end
