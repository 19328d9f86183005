-- Shared by every bench script (loaded with dofile): script arguments as
-- key=value pairs, and a done() that prints one line "WRK_JSON {...}" for
-- bench/lib/wrk.ts to parse.
--
-- Statuses: by default no response() callback is defined, so wrk never calls
-- into Lua per answer (nor buffers headers and bodies for it): wrk's own count
-- of answers with a status >= 400 is the error count, and the bytes read per
-- answer show whether the answers stayed the ones a checking pass verified.
-- With `count_statuses=1` (a short checking pass, or a paced run far below
-- the generator's ceiling) every answer's status is counted in Lua, and one
-- that is not the expected one (`expect=304`; default any 2xx) is an error.

function parse_args(args)
  local opts = {}
  for _, a in ipairs(args or {}) do
    local k, v = a:match("^([^=]+)=(.*)$")
    if k then opts[k] = v end
  end
  return opts
end

local threads = {}
local next_thread = 0

function setup(thread)
  thread:set("thread_index", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

-- Per thread (each wrk thread has its own Lua state).
statuses = {}
unexpected = 0
expect = nil
counted = false

local function count_response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if expect then
    if status ~= expect then unexpected = unexpected + 1 end
  elseif status < 200 or status > 299 then
    unexpected = unexpected + 1
  end
end

-- Called from each script's init(): wrk looks for response() right after init.
function set_expect(opts)
  expect = opts.expect and tonumber(opts.expect) or nil
  if opts.count_statuses == "1" then
    counted = true
    response = count_response
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local counts, bad, was_counted = {}, 0, false
  for _, t in ipairs(threads) do
    if t:get("counted") then
      was_counted = true
      bad = bad + t:get("unexpected")
      for status, n in pairs(t:get("statuses")) do counts[status] = (counts[status] or 0) + n end
    end
  end
  if not was_counted then bad = e.status end
  local parts = {}
  for status, n in pairs(counts) do table.insert(parts, string.format('"%d":%d', status, n)) end
  io.write(string.format(
    'WRK_JSON {"requests":%d,"durationUs":%d,"bytes":%d,"counted":%s,"unexpected":%d,"statuses":{%s},' ..
    '"socket":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
    '"latencyUs":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes, tostring(was_counted), bad, table.concat(parts, ","),
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end

-- Instance and service names as bench/lib/fixtures.ts makes them.
function instance_id(i) return string.format("i-%06d", i) end
function service_name(s) return string.format("svc-%05d", s) end
