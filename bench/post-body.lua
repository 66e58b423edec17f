-- wrk script for bench/run.sh's body workload: every request is a POST with the same body of
-- N bytes (wrk ... -s bench/post-body.lua URL -- N), built once per thread.
function init(args)
  local n = tonumber(args[1] or "") or 1048576
  wrk.method = "POST"
  wrk.body = string.rep("x", n)
  wrk.headers["Content-Type"] = "application/octet-stream"
end
