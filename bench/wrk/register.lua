-- PUT /services/{service}/instances/{id} with a new id on every request:
-- r-<run>-<thread>-<n>, where `run` is unique per wrk run (rounds never collide).
--   args: service=NAME run=TAG body=JSON
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local prefix, n = nil, 0

function init(args)
  local opts = parse_args(args)
  set_expect(opts)
  wrk.method = "PUT"
  wrk.body = opts.body
  wrk.headers["Content-Type"] = "application/json"
  prefix = "/services/" .. opts.service .. "/instances/r-" .. opts.run .. "-" .. (thread_index or 0) .. "-"
end

function request()
  n = n + 1
  return wrk.format(nil, prefix .. n)
end
