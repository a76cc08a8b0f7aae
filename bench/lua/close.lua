-- A new connection per request: every request says "Connection: close", the server
-- answers and closes, and wrk connects again (over https: a new TLS handshake,
-- full or resumed as the server allows).

dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")

wrk.headers["Connection"] = "close"
