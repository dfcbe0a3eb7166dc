-- wrk: BATCH (default 1000) specification messages per POST /save as NDJSON.
--   BATCH=1000 wrk -t1 -c8 -d20s -s loadgen/wrk/save_bulk.lua http://127.0.0.1:8080/save
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
require("gen")
local batch = tonumber(os.getenv("BATCH") or "1000")
function request()
  local lines = {}
  for i = 1, batch do lines[i] = message() end
  return wrk.format("POST", nil, headers, table.concat(lines, "\n"))
end
done = report(batch)
