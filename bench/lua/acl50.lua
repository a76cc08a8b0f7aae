-- The L7 routing scenario's traffic: requests that match each of the 50 rules of
-- bench/configs.py rules(50) in turn, plus one that matches none (the default pool).
-- Rule K (K even) matches Host svcK.example.com; rule K (K odd) matches the path
-- prefix /svcK/. A first-match router evaluates 25 rules per request on average.

dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")

local RULES = 50
local requests = {}

init = function(args)
  for k = 0, RULES do
    local host, path = "bench.local", "/"
    if k == RULES then
      path = "/unrouted/index.html"
    elseif k % 2 == 0 then
      host = "svc" .. k .. ".example.com"
    else
      path = "/svc" .. k .. "/index.html"
    end
    requests[#requests + 1] = wrk.format("GET", path, {Host = host})
  end
end

local i = 0
request = function()
  i = i % #requests + 1
  return requests[i]
end
