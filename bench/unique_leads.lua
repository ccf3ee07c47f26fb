-- wrk script: POST /leads with a unique email per request (per thread counter + thread id).
-- The thread number is a global set from setup(); a `local` of the same name would
-- shadow it in every thread and make all threads send the same addresses.
local counter = 0
local nthreads = 0

function setup(thread)
  nthreads = nthreads + 1
  thread:set("thread_no", nthreads)
end

function init(args)
  prefix = (args[1] or "run") .. "-" .. tostring(thread_no)
  form = args[2] == "form"  -- a plain HTML form's body (urlencoded, Spanish field names)
end

request = function()
  counter = counter + 1
  if form then
    local body = 'nombre=Bench+' .. counter .. '&correo=b' .. counter .. '-' .. prefix ..
      '%40bench.example&mensaje=Hola%2C+quiero+un+presupuesto+para+una+tienda+online%2C+gracias.'
    return wrk.format("POST", "/leads", {["Content-Type"] = "application/x-www-form-urlencoded",
                                         ["Accept"] = "application/json"}, body)
  end
  local body = '{"name":"Bench ' .. counter .. '","email":"b' .. counter .. '-' .. prefix ..
    '@bench.example","message":"Hola, quiero un presupuesto para una tienda online, gracias."}'
  return wrk.format("POST", "/leads", {["Content-Type"] = "application/json"}, body)
end

done = function(summary, latency, requests)
  io.write(string.format("JSON {\"requests\":%d,\"duration_us\":%d,\"errors\":%d,\"p50_us\":%d,\"p99_us\":%d,\"non2xx\":%d}\n",
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), summary.errors.status))
end
