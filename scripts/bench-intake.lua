-- wrk script for scripts/bench-intake: POSTs one signed webhook body to /webhook, each request
-- with its own X-GitHub-Delivery ("<run>-<thread>-<n>"), and prints a machine-readable summary.
-- Settings come from the environment (set by scripts/bench-intake):
--   BENCH_BODY  file whose exact bytes are sent (the signature is over these bytes)
--   BENCH_EVENT X-GitHub-Event
--   BENCH_SIG   X-Hub-Signature-256 of BENCH_BODY
--   BENCH_RUN   prefix of the delivery ids, unique per run

local threads = {}
local next_id = 0

function setup(thread)
    thread:set("tid", next_id)
    next_id = next_id + 1
    table.insert(threads, thread)
end

local body, event, sig, run, n, prefix

function init(args)
    local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
    body = f:read("*a")
    f:close()
    event = os.getenv("BENCH_EVENT")
    sig = os.getenv("BENCH_SIG")
    run = os.getenv("BENCH_RUN")
    prefix = run .. "-" .. tid .. "-"
    n = 0
end

function request()
    n = n + 1
    return wrk.format("POST", "/webhook", {
        ["Content-Type"] = "application/json",
        ["X-GitHub-Event"] = event,
        ["X-GitHub-Delivery"] = prefix .. n,
        ["X-Hub-Signature-256"] = sig,
    }, body)
end

function done(summary, latency, requests)
    local secs = summary.duration / 1e6
    local e = summary.errors
    local failed = e.status + e.connect + e.read + e.write + e.timeout
    io.write(string.format("BENCH requests=%d ok=%d non2xx=%d socket_errors=%d secs=%.3f\n",
        summary.requests, summary.requests - e.status, e.status,
        e.connect + e.read + e.write + e.timeout, secs))
    io.write(string.format("BENCH rate=%.0f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
        (summary.requests - e.status) / secs,
        latency:percentile(50) / 1000, latency:percentile(90) / 1000,
        latency:percentile(99) / 1000, latency.max / 1000))
end
