-- wrk script: POSTs EmailBison LEAD_REPLIED deliveries with a unique data.reply.id each, or,
-- with probability BENCH_DUP_RATIO, a repeat of one of the thread's last 256 ids (a provider
-- re-delivering, sometimes while the first copy is still in flight).
--
-- Environment (set by bench/ingest.py):
--   BENCH_PATH           path and query of the webhook URL (with ?token=...)
--   BENCH_BODY_TEMPLATE  JSON body with __REPLY_ID__ and __LEAD__ placeholders
--   BENCH_DUP_RATIO      0..1, share of requests that repeat an earlier id (default 0)
--   BENCH_RUN            run number, keeps ids of successive runs apart (default 0)
--   BENCH_LEADS          number of distinct lead emails to cycle through (default 10000)
-- The id also goes out as the X-Bench-Key header, which the ceiling app reads instead of
-- parsing the body; hookgate ignores it.

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  path = os.getenv("BENCH_PATH") or "/"
  dup_ratio = tonumber(os.getenv("BENCH_DUP_RATIO") or "0")
  leads = tonumber(os.getenv("BENCH_LEADS") or "10000")
  local run = tonumber(os.getenv("BENCH_RUN") or "0")
  local file = assert(io.open(os.getenv("BENCH_BODY_TEMPLATE"), "rb"))
  template = file:read("*a")
  file:close()
  base = run * 1000000000000 + (tid + 1) * 1000000000
  fresh = 0
  dups = 0
  recent = {}
  math.randomseed(run * 1000 + tid + 1)
  headers = { ["Content-Type"] = "application/json" }
end

function request()
  local id
  if fresh > 0 and math.random() < dup_ratio then
    id = recent[math.random(math.min(fresh, 256))]
    dups = dups + 1
  else
    fresh = fresh + 1
    id = base + fresh
    recent[(fresh - 1) % 256 + 1] = id
  end
  local key = string.format("%d", id)
  local lead = string.format("%d", id % leads)
  local body = template:gsub("__REPLY_ID__", key):gsub("__LEAD__", lead)
  headers["X-Bench-Key"] = key
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local fresh_total, dup_total = 0, 0
  for _, thread in ipairs(threads) do
    fresh_total = fresh_total + thread:get("fresh")
    dup_total = dup_total + thread:get("dups")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d},'
      .. '"generated":{"fresh":%d,"dups":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, fresh_total, dup_total))
end
