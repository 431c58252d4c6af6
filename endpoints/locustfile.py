"""The locustfile of a load test: the one the worker runs (worker.load_test), and the one a person
downloads to run the same test elsewhere.

It is self-contained (Locust is all it needs), names the endpoint's public URL and carries the
example rows; the key comes from the API_KEY environment variable, never from the file.

    text = locustfile_text(endpoint="iris", url="http://127.0.0.1:18100", rows=[...], sends_key=True,
                           users=5, spawn_rate=2, duration=30)
"""

from __future__ import annotations

import pprint

#: The header the serving process and the gateway read an API key from.
KEY_HEADER = "x-api-key"
#: A request named so in Locust's statistics; a batch is "batch of N rows".
SINGLE_ROW = "single row"
#: How many single rows each user sends for one batch (the batch weighs the rest of the load).
SINGLE_ROW_WEIGHT = 4

TEMPLATE = '''"""Load test of the endpoint {endpoint}, as the model portal runs it.

Run it with Locust (pip install locust){key_note}:

    {command}

Each user sends the example rows one at a time ({single_row!r}) and, once for every {weight} of those,
all of them as one batch ({{"inputs": [...]}}), as the portal's playground builds them; each user
sends its next request as soon as the last one is answered. A request fails unless the endpoint
answers 200; the failure's reason is the status and the endpoint's own `detail`.
"""

import itertools
import os

from locust import FastHttpUser, constant, task

HOST = {url!r}
ROWS = {rows}
KEY = os.environ.get("API_KEY", "")


class EndpointUser(FastHttpUser):
    host = HOST
    wait_time = constant(0)

    def on_start(self):
        self.headers = {{{key_header!r}: KEY}} if KEY else {{}}
        self.rows = itertools.cycle(ROWS)

    @task({weight})
    def single_row(self):
        self.predict(next(self.rows), {single_row!r})

    @task(1)
    def batch(self):
        self.predict({{"inputs": ROWS}}, f"batch of {{len(ROWS)}} rows")

    def predict(self, body, name):
        with self.client.post(
            "/predict", json=body, headers=self.headers, name=name, catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(failure_reason(response))


def failure_reason(response):
    """The status and the endpoint's `detail` (the same reason counts once however often it comes)."""
    if not response.status_code:
        return f"no answer: {{type(response.error).__name__}}"
    try:
        detail = response.json().get("detail", "")
    except Exception:
        detail = ""
    return f"HTTP {{response.status_code}}" + (f": {{str(detail)[:120]}}" if detail else "")
'''


def locustfile_name(endpoint: str) -> str:
    return f"locustfile-{endpoint}.py"


def locustfile_text(
    *, endpoint: str, url: str, rows: list[dict], sends_key: bool, users: int, spawn_rate: int, duration: int
) -> str:
    """The locustfile of a test of `endpoint` at `url` sending `rows` (see the module's docstring)."""
    command = (
        f"locust -f {locustfile_name(endpoint)} --headless --users {users} "
        f"--spawn-rate {spawn_rate} --run-time {duration}s"
    )
    if sends_key:
        command = f"API_KEY=<a key for {endpoint}> {command}"
    return TEMPLATE.format(
        endpoint=endpoint,
        url=url.rstrip("/"),
        rows=pprint.pformat(rows, width=100, sort_dicts=False),
        key_note=", with a key for the endpoint in API_KEY" if sends_key else "",
        command=command,
        key_header=KEY_HEADER,
        single_row=SINGLE_ROW,
        weight=SINGLE_ROW_WEIGHT,
    )
