-- wrk script for bench/api_load.py: POST /v1/search with a different JSON question per request.
--
--   wrk -t 2 -c 8 -d 10s --latency -s bench/wrk_search.lua http://127.0.0.1:PORT/v1/search \
--       -- BODIES_FILE THREADS
--
-- BODIES_FILE holds one JSON request body per line (bench/api_load.py writes it, so JSON
-- escaping stays in Python). THREADS must equal wrk's -t: thread i of n sends lines i, i+n,
-- i+2n, ... so no two threads send the same question, and starts over at the end of its share
-- (then the server's query-embedding cache answers the repeats; done() reports how often).
-- Without a file, every request asks one built-in question.

local threads = {}
local next_id = 0

-- Runs in the main Lua state, once per thread, before that thread's init().
function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

-- Runs in each thread's own Lua state; requests are formatted once here, not per request.
function init(args)
   local path = args[1]
   local n_threads = tonumber(args[2]) or 1
   local headers = { ["Content-Type"] = "application/json" }
   requests = {}
   if path then
      local line_no = 0
      for line in io.lines(path) do
         if line ~= "" then
            if line_no % n_threads == id then
               table.insert(requests, wrk.format("POST", nil, headers, line))
            end
            line_no = line_no + 1
         end
      end
   end
   if #requests == 0 then
      table.insert(requests, wrk.format("POST", nil, headers, '{"query": "What is dropout?"}'))
   end
   index = 0
   wrapped = 0
end

function request()
   index = index + 1
   if index > #requests then
      index = 1
      wrapped = wrapped + 1
   end
   return requests[index]
end

-- Runs in the main state after the test: the percentiles wrk --latency does not print, and
-- how many times a thread ran out of distinct questions.
function done(summary, latency, requests)
   local wraps = 0
   for _, thread in ipairs(threads) do
      wraps = wraps + (tonumber(thread:get("wrapped")) or 0)
   end
   io.write(string.format(
      "mlrag-wrk p50_us=%d p90_us=%d p95_us=%d p99_us=%d max_us=%d requests=%d wraps=%d\n",
      latency:percentile(50), latency:percentile(90), latency:percentile(95),
      latency:percentile(99), latency.max, summary.requests, wraps))
end
