-- Keep-alive at a fixed pace instead of as fast as the server goes: each connection
-- waits PACE_MS before its next request, so 50 connections offer about
-- 50 * 1000 / (PACE_MS + the response time) requests a second, the same to every
-- server, below what any of them saturates at. Per server CPU-second then compares
-- what a request costs at equal load, where every server (not only the slowest)
-- sleeps between requests and is woken for the next.

dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")

local PACE_MS = 5

delay = function()
  return PACE_MS
end
