-- PUT /services/{service}/instances/{id}/heartbeat round robin over `count`
-- instances (ids i-000000 …); thread t of n starts at t and steps by n, so the
-- threads share the work without renewing the same instance twice in a row.
--   args: count=N (service=NAME | services=S [service_offset=O]: instance k is in svc-<O + k mod S>)
--         [threads=n] [start=K: begin at instance K] [rate=R: at most R heartbeats/s over all threads, see below]
--
-- With `rate`, requests are paced to a schedule instead of saturating: each
-- request takes the thread's next time slot (1/(R/n) s apart) and its
-- connection waits for it (wrk's delay()). Slots missed while every
-- connection was busy are caught up at once, at most 1 s worth, as a fleet
-- of clients would send its late renewals. The clock is CLOCK_MONOTONIC
-- through LuaJIT's FFI (wrk's Lua has no sub-second clock of its own).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local count, services, service, offset, step, k

function init(args)
  local opts = parse_args(args)
  set_expect(opts)
  count = tonumber(opts.count)
  services = tonumber(opts.services)
  service = opts.service
  offset = tonumber(opts.service_offset or "0")
  step = tonumber(opts.threads or "1")
  k = tonumber(opts.start or "0") + (thread_index or 0)
  wrk.method = "PUT"
  if opts.rate then pace(tonumber(opts.rate) / step) end
end

-- Defines delay() only when pacing: once it exists, wrk routes every request through a timer.
function pace(per_second)
  local ffi = require("ffi")
  ffi.cdef("typedef struct { long tv_sec; long tv_nsec; } bench_timespec; int clock_gettime(int clk, bench_timespec *tp);")
  local ts = ffi.new("bench_timespec")
  local function now()
    ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
  end
  local interval = 1 / per_second
  local next_slot = now()
  function delay()
    local t = now()
    if next_slot < t - 1 then next_slot = t - 1 end
    local slot = next_slot
    next_slot = next_slot + interval
    return slot > t and math.floor((slot - t) * 1000) or 0
  end
end

function request()
  local i = k % count
  k = k + step
  local svc = services and service_name(offset + i % services) or service
  return wrk.format(nil, "/services/" .. svc .. "/instances/" .. instance_id(i) .. "/heartbeat")
end
