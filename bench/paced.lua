-- wrk script for the paced A/B scenario: every connection waits PACE_MS
-- between requests, so the offered load is fixed (about connections / PACE_MS
-- per ms) and both builds of a pair get the same load at the same time.
dofile(os.getenv("BENCH_REPORT"))
local pace = tonumber(os.getenv("PACE_MS") or "10")
delay = function()
  return pace
end
