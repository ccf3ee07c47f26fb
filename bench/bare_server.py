"""The ceiling: a bare aiohttp JSON handler on the same machine (no validation, no store)."""

import sys

import uvloop
from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response({"id": "x", "status": "received", "n": len(body)}, status=202)


app = web.Application()
app.router.add_post("/leads", handle)
# Same event loop as `leadbox run` (uvloop when installed), so the ratio compares like with like.
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, loop=uvloop.new_event_loop())
