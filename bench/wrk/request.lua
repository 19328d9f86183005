-- One fixed request, repeated: the cached GET (plain, `?tag=` in the URL, or
-- with `header=If-None-Match:"<etag>" expect=304`) and etcd's JSON gateway
-- range (`method=POST body=...`).
--   args: [method=GET] [body=...] [header=Name:value] [expect=status]
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

function init(args)
  local opts = parse_args(args)
  set_expect(opts)
  wrk.method = opts.method or "GET"
  wrk.body = opts.body
  if opts.body then wrk.headers["Content-Type"] = "application/json" end
  if opts.header then
    local name, value = opts.header:match("^([^:]+):(.*)$")
    wrk.headers[name] = value
  end
end
