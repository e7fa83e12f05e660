-- wrk script for POST /execute {"command":"echo hi"}
wrk.method = "POST"
wrk.body = '{"command":"echo hi"}'
wrk.headers["Content-Type"] = "application/json"
