-- DELETE /services/{service}/instances/{id}, each of `count` instances once
-- (thread t of n takes ids t, t+n, …). The pool must outlast the run: once it
-- is used up, ids repeat and their 404s count as errors, which the bench reports.
--   args: service=NAME count=N [threads=n]
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local service, count, step, k

function init(args)
  local opts = parse_args(args)
  set_expect(opts)
  wrk.method = "DELETE"
  service = opts.service
  count = tonumber(opts.count)
  step = tonumber(opts.threads or "1")
  k = thread_index or 0
end

function request()
  local i = k % count
  k = k + step
  return wrk.format(nil, "/services/" .. service .. "/instances/" .. instance_id(i))
end
