-- Shared generator for loadgen/wrk/save.lua and save_bulk.lua (the specification's messages):
--   tag N = floor(ln(U)/ln(0.99)) capped at 9999 (tag 0 gets 1 % of messages, tag 1 1 % of the rest, ...),
--   10 values doing a small random walk per tag, time = wall-clock second followed by a 9-digit per-thread
--   counter (wrk's Lua clock has 1 s resolution), so times strictly increase per thread.
local floor, log, random, fmt = math.floor, math.log, math.random, string.format
local LN99 = log(0.99)
local vals, tid, last_sec, sub = {}, 1, 0, 0
local next_id = 1

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

function init(args)
  tid = tonumber(wrk.thread:get("tid")) or 1
  math.randomseed(os.time() * 1000 + tid)
end

local function tag()
  local n = floor(log(1.0 - random()) / LN99)
  if n > 9999 then n = 9999 end
  return n
end

local function ts()
  local s = os.time()
  if s ~= last_sec then last_sec = s; sub = tid end
  sub = sub + 64
  return fmt("%d%09d", s, sub)
end

local function values(n)
  local v = vals[n]
  if v == nil then
    v = {}
    for i = 1, 10 do v[i] = 10.0 * i + (n % 97) + random() end
    vals[n] = v
  else
    for i = 1, 10 do v[i] = v[i] + (random() - 0.5) * 0.01 end
  end
  return v
end

function message()
  local n = tag()
  local v = values(n)
  return fmt('{"time":%s,"tag":"t%d","values":[%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f]}',
    ts(), n, v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10])
end

headers = { ["Content-Type"] = "application/json" }

-- rows: messages per request, for the msg/s figure.
function report(rows)
  return function(summary, latency, requests) done_impl(summary, latency, rows) end
end

function done_impl(summary, latency, rows)
  local e = summary.errors
  local rps = summary.requests / (summary.duration / 1e6)
  io.write(fmt("RESULT msgs_per_s=%.0f ", rps * rows))
  io.write(fmt("rps=%.0f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f non2xx=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.status, e.connect + e.read + e.write + e.timeout))
end
