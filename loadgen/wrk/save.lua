-- wrk: one specification message per POST /save (geometric popularity over 10k tags, random-walk values).
--   wrk -t1 -c40 -d20s -s loadgen/wrk/save.lua http://127.0.0.1:8080/save
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
require("gen")
function request()
  return wrk.format("POST", nil, headers, message())
end
done = report(1)
