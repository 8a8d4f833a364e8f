-- Spreads wrk's requests over 10,000 client addresses (X-Forwarded-For), so that no address reaches
-- its plan's rate limit, and counts 5xx and other non-2xx answers (printed after wrk's summary).
-- WRK_METHOD, WRK_BODY and WRK_HEADERS ("Name: value" lines) shape every request.
local requests, count, threads = {}, 0, {}
-- Globals of each thread's own Lua state, read back in done() (thread:get copies numbers, not tables).
server_errors, other_non_2xx = 0, 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local method = os.getenv("WRK_METHOD") or "GET"
  local body = os.getenv("WRK_BODY") or ""
  local headers = {}
  for line in string.gmatch(os.getenv("WRK_HEADERS") or "", "[^\n]+") do
    local name, value = string.match(line, "^([^:]+):%s*(.*)$")
    if name then headers[name] = value end
  end
  for i = 0, 9999 do
    headers["X-Forwarded-For"] = string.format("10.%d.%d.%d", math.floor(i / 200) % 250, i % 200 + 1, 1 + i % 7)
    requests[i + 1] = wrk.format(method, nil, headers, body ~= "" and body or nil)
  end
end

function request()
  count = count % #requests + 1
  return requests[count]
end

function response(status, headers, body)
  if status >= 500 then
    server_errors = server_errors + 1
  elseif status >= 300 then
    other_non_2xx = other_non_2xx + 1
  end
end

function done(summary, latency, requests_made)
  local errors, other = 0, 0
  for _, thread in ipairs(threads) do
    errors = errors + thread:get("server_errors")
    other = other + thread:get("other_non_2xx")
  end
  io.write(string.format("5xx: %d\nother non-2xx: %d\n", errors, other))
end
