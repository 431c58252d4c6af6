"""Label and field selectors as list calls take them (`app=web,tier!=db`, `env in (a,b)`, `!canary`)."""

from __future__ import annotations

import re
from collections.abc import Callable

from tests.fakes.kubernetes_api.status import bad_request

Requirement = Callable[[dict], bool]
SET_RULE = re.compile(r"^([^\s!=]+)\s+(in|notin)\s+\((.*)\)$")
RULE = re.compile(r"^([^\s!=]+)\s*(==|!=|=)\s*(\S*)$")


def _split(selector: str) -> list[str]:
    """The selector's requirements: split on commas outside `( )`."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def label_selector(selector: str | None) -> Requirement:
    """A test of an object's labels; 400 BadRequest for a selector the API server would not parse."""
    rules: list[Callable[[dict], bool]] = []
    for part in _split(selector or ""):
        if match := SET_RULE.match(part):
            key, operator, values = (
                match.group(1),
                match.group(2),
                {v.strip() for v in match.group(3).split(",")},
            )
            rules.append(_set_rule(key, operator == "in", values))
        elif match := RULE.match(part):
            key, operator, value = match.groups()
            rules.append(_equality_rule(key, operator != "!=", value))
        elif re.match(r"^!?[A-Za-z0-9][-A-Za-z0-9_./]*$", part):
            rules.append(_exists_rule(part.lstrip("!"), not part.startswith("!")))
        else:
            raise bad_request(
                f'unable to parse requirement: found "{part}", expected: a valid label selector'
            )
    return lambda obj: all(rule((obj.get("metadata") or {}).get("labels") or {}) for rule in rules)


def _set_rule(key: str, inside: bool, values: set[str]) -> Callable[[dict], bool]:
    if inside:
        return lambda labels: labels.get(key) in values
    return lambda labels: labels.get(key) not in values  # an object without the key is not in the set


def _equality_rule(key: str, equal: bool, value: str) -> Callable[[dict], bool]:
    return lambda labels: (labels.get(key) == value) == equal


def _exists_rule(key: str, present: bool) -> Callable[[dict], bool]:
    return lambda labels: (key in labels) == present


def field_selector(selector: str | None) -> Requirement:
    """A test of an object's fields by dotted path (`metadata.name=web`, `involvedObject.kind=Pod`)."""
    rules = []
    for part in _split(selector or ""):
        match = RULE.match(part)
        if not match:
            raise bad_request(f'invalid selector: "{part}"; can\'t understand "{part}"')
        path, operator, value = match.groups()
        rules.append((path.split("."), operator != "!=", value))
    return lambda obj: all((_field(obj, path) == value) == equal for path, equal, value in rules)


def _field(obj: dict, path: list[str]) -> str:
    node: object = obj
    for part in path:
        node = node.get(part, "") if isinstance(node, dict) else ""
    return "" if node is None else str(node)
