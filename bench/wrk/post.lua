-- wrk script: POST one fixed body with fixed headers, then print one JSON line for bench/load.py.
-- Body and headers come from the environment so every contender sends the same bytes:
--   BENCH_BODY_FILE  path of the request body
--   BENCH_HEADERS    "Name: value" lines
--   BENCH_STOP_AT    optional (drain mode, bench/soak.py): a CLOCK_MONOTONIC time in seconds, as
--                    Python's time.monotonic() reads it; see below

local function read(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

wrk.method = "POST"
wrk.body = read(os.getenv("BENCH_BODY_FILE"))
wrk.headers["Content-Type"] = "application/json"
for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.-)%s*$")
  if name then
    wrk.headers[name] = value
  end
end

-- Drain mode. When wrk's -d ends it drops the requests still in flight, so the count it prints can
-- be up to one request per connection short of what the server answered, which is too loose for a
-- check that every answered request was logged. With BENCH_STOP_AT, each connection stops sending
-- at that moment and goes idle once its answer is in; wrk's -d then ends on idle connections, and
-- "sent" (requests handed to the socket, summed over threads) shows that nothing was cut off.
-- delay() is wrk's hook before each request; LuaJIT's ffi reads the clock (os.time has 1 s steps).
local stop_at = tonumber(os.getenv("BENCH_STOP_AT") or "")
local threads = {}
if stop_at then
  local ffi = require("ffi")
  ffi.cdef [[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clock_id, bench_timespec *now);
  ]]
  local CLOCK_MONOTONIC = 1
  local IDLE_MS = 24 * 3600 * 1000
  local now = ffi.new("bench_timespec")
  sent = 0 -- a global, so done() can read it from each thread's state with thread:get("sent")

  function delay()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, now)
    if tonumber(now.tv_sec) + tonumber(now.tv_nsec) / 1e9 >= stop_at then
      return IDLE_MS
    end
    sent = sent + 1
    return 0
  end

  function setup(thread)
    table.insert(threads, thread)
  end
end

local function total_sent()
  if not stop_at then
    return -1
  end
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("sent")
  end
  return total
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"sent":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"mean":%.1f,"max":%d}}\n',
    summary.requests, total_sent(), summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
