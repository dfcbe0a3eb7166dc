-- wrk: as save.lua, but every message is sent twice in a row (a client retrying each request once): half
-- the requests repeat a record already stored, which the engine stores once.
--   wrk -t1 -c40 -d20s -s loadgen/wrk/save_retry.lua http://127.0.0.1:8080/save
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
require("gen")
local last = nil
function request()
  local body = last
  if body == nil then
    body = message()
    last = body
  else
    last = nil
  end
  return wrk.format("POST", nil, headers, body)
end
done = report(1)
