"""The same call as the playground's, to copy: curl, Python (requests) and JavaScript (fetch).

Each sends exactly the body and `return` choice the form sends, to the endpoint's public URL. The
key is a placeholder read from the environment (`$API_KEY`), except on the one page that shows a
key just revealed: there the curl carries it (`key=`), and nothing keeps it.

    snippets = call_snippets(url="http://127.0.0.1:18100", body={"sepal_length": 5.1}, mode="both",
                             checks_keys=True)
    snippets["curl"]  # curl -X POST 'http://127.0.0.1:18100/predict?return=both' ...
"""

from __future__ import annotations

import json
import shlex
from urllib.parse import urlencode

KEY_PLACEHOLDER = "$API_KEY"
TOKEN_PLACEHOLDER = "$ID_TOKEN"


def predict_url(url: str, mode: str | None) -> str:
    return url.rstrip("/") + "/predict" + (f"?{urlencode({'return': mode})}" if mode else "")


def call_snippets(
    *, url: str, body: dict, mode: str | None, checks_keys: bool, key: str = "", bearer: bool = False
) -> dict:
    """{"curl": ..., "python": ..., "javascript": ..., "url": ...} for POSTing `body` to `url`;
    `bearer`: the endpoint takes `Authorization: Bearer <token>` (the identity mode), read from
    `$ID_TOKEN`."""
    target = predict_url(url, mode)
    return {
        "url": target,
        "curl": _curl(target, body, checks_keys, key, bearer),
        "python": _python(target, body, checks_keys, bearer),
        "javascript": _javascript(target, body, checks_keys, bearer),
    }


def _curl(url: str, body: dict, checks_keys: bool, key: str, bearer: bool = False) -> str:
    lines = [f"curl -X POST {shlex.quote(url)}", "-H 'content-type: application/json'"]
    if checks_keys:
        # The placeholder in double quotes, so the shell puts the variable's value in.
        lines.append(
            f"-H {shlex.quote('x-api-key: ' + key)}" if key else f'-H "x-api-key: {KEY_PLACEHOLDER}"'
        )
    if bearer:
        lines.append(f'-H "Authorization: Bearer {TOKEN_PLACEHOLDER}"')
    lines.append(f"-d {shlex.quote(json.dumps(body, ensure_ascii=False))}")
    return " \\\n  ".join(lines)


def _python(url: str, body: dict, checks_keys: bool, bearer: bool = False) -> str:
    payload = json.dumps(body, indent=4, ensure_ascii=False)
    # JSON's literals read as Python's: true/false/null -> True/False/None.
    payload = _python_literals(payload)
    lines = ["import os", "", "import requests", "", f"body = {payload}", "response = requests.post("]
    lines.append(f"    {url!r},")
    lines.append("    json=body,")
    if checks_keys:
        lines.append('    headers={"x-api-key": os.environ["API_KEY"]},')
    if bearer:
        lines.append('    headers={"Authorization": "Bearer " + os.environ["ID_TOKEN"]},')
    lines += ["    timeout=30,", ")", "print(response.status_code, response.json())"]
    if not checks_keys and not bearer:
        lines = lines[2:]  # no credential, no os
    return "\n".join(lines)


def _python_literals(payload: str) -> str:
    """JSON text as a Python literal: only the keywords outside strings change."""
    out, in_string, escaped, index = [], False, False, 0
    replacements = {"true": "True", "false": "False", "null": "None"}
    while index < len(payload):
        char = payload[index]
        if in_string:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            index += 1
            continue
        if char == '"':
            in_string = True
            out.append(char)
            index += 1
            continue
        for word, replacement in replacements.items():
            if payload.startswith(word, index):
                out.append(replacement)
                index += len(word)
                break
        else:
            out.append(char)
            index += 1
    return "".join(out)


def _javascript(url: str, body: dict, checks_keys: bool, bearer: bool = False) -> str:
    headers = ['"content-type": "application/json"']
    if checks_keys:
        headers.append('"x-api-key": process.env.API_KEY')
    if bearer:
        headers.append('authorization: "Bearer " + process.env.ID_TOKEN')
    payload = json.dumps(body, indent=2, ensure_ascii=False).replace("\n", "\n  ")
    return "\n".join(
        [
            f"const response = await fetch({json.dumps(url)}, {{",
            '  method: "POST",',
            f"  headers: {{ {', '.join(headers)} }},",
            f"  body: JSON.stringify({payload}),",
            "});",
            "console.log(response.status, JSON.stringify(await response.json()));",
        ]
    )
