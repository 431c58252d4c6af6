"""The raw HTTP floor: the least an ASGI app can do, a constant JSON body, without reading the request.

Run: `uvicorn bench.serving.floor:app`.
"""

BODY = b'{"target":"setosa"}'
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))],
}
RESPONSE = {"type": "http.response.body", "body": BODY}


async def app(scope, receive, send):
    if scope["type"] == "http":
        await send(START)
        await send(RESPONSE)
