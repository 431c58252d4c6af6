"""The three PATCH bodies the API server takes for built-in types.

- JSON merge patch (RFC 7386, `application/merge-patch+json`): maps merge, `null` deletes a key,
  any list is replaced whole.
- Strategic merge patch (`application/strategic-merge-patch+json`, kubectl's default): like a merge
  patch, except lists the Kubernetes types declare `patchStrategy: merge` merge element by element on
  their `patchMergeKey` (containers by `name`, container ports by `containerPort`, service ports by
  `port`, ...), and the `$patch: delete` / `$patch: replace` directives.
- JSON patch (RFC 6902, `application/json-patch+json`): a list of add/remove/replace/move/copy/test
  operations on JSON pointers.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.fakes.kubernetes_api.status import KubeError, bad_request

#: The lists the core and apps types merge by key (`patchMergeKey` in k8s.io/api), by field name.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _merge_key(field: str, items: list) -> str | None:
    if field == "ports":  # a container's ports merge on containerPort, a Service's on port
        dicts = [item for item in items if isinstance(item, dict)]
        return "containerPort" if any("containerPort" in item for item in dicts) else "port"
    return MERGE_KEYS.get(field)


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {key: copy.deepcopy(value) for key, value in patch.items() if key != "$patch"}
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue  # $retainKeys, $setElementOrder/...: ordering and pruning hints
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            merge_key = _merge_key(key, result[key] + value)
            result[key] = _merge_list(result[key], value, merge_key) if merge_key else copy.deepcopy(value)
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    return result


def _merge_list(current: list, patch: list, merge_key: str) -> list:
    merged = [copy.deepcopy(item) for item in current]
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise bad_request(f"map: {item!r} does not contain declared merge key: {merge_key}")
        index = next((i for i, old in enumerate(merged) if old.get(merge_key) == item[merge_key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                merged.pop(index)
        elif index is None:
            merged.append({key: value for key, value in item.items() if key != "$patch"})
        else:
            merged[index] = strategic_merge_patch(merged[index], item)
    return merged


def json_patch(target: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    document = copy.deepcopy(target)
    for operation in operations:
        op, path = operation.get("op"), operation.get("path", "")
        if op in ("add", "replace", "test"):
            if "value" not in operation:
                raise bad_request(
                    f'the server rejected our request due to an error in our request: "value" missing in {op}'
                )
        if op == "add":
            document = _put(document, path, copy.deepcopy(operation["value"]), insert=True)
        elif op == "remove":
            document, _ = _take(document, path)
        elif op == "replace":
            _get(document, path)
            document = _put(document, path, copy.deepcopy(operation["value"]), insert=False)
        elif op == "move":
            document, value = _take(document, operation.get("from", ""))
            document = _put(document, path, value, insert=True)
        elif op == "copy":
            document = _put(
                document, path, copy.deepcopy(_get(document, operation.get("from", ""))), insert=True
            )
        elif op == "test":
            if _get(document, path) != operation["value"]:
                raise KubeError("Invalid", f"the server rejected our request: testing value {path} failed")
        else:
            raise bad_request(f"Unexpected kind: {op}")
    return document


def _tokens(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"JSON pointer must be empty or start with a /: {path!r}")
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def _missing(path: str) -> KubeError:
    return KubeError(
        "Invalid",
        f"the server rejected our request due to an error in our request: "
        f'jsonpatch replace operation does not apply: doc is missing path: "{path}"',
    )


def _get(document: Any, path: str) -> Any:
    return _walk(document, _tokens(path), path)


def _walk(document: Any, tokens: list[str], path: str) -> Any:
    node = document
    for token in tokens:
        try:
            node = node[int(token)] if isinstance(node, list) else node[token]
        except (KeyError, IndexError, ValueError, TypeError):
            raise _missing(path) from None
    return node


def _put(document: Any, path: str, value: Any, *, insert: bool) -> Any:
    tokens = _tokens(path)
    if not tokens:
        return value
    parent = _walk(document, tokens[:-1], path)
    last = tokens[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if insert:
            parent.insert(index, value)
        else:
            parent[index] = value
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise _missing(path)
    return document


def _take(document: Any, path: str) -> tuple[Any, Any]:
    tokens = _tokens(path)
    if not tokens:
        raise bad_request("jsonpatch: cannot remove the whole document")
    parent = _walk(document, tokens[:-1], path)
    last = tokens[-1]
    try:
        value = parent.pop(int(last)) if isinstance(parent, list) else parent.pop(last)
    except (KeyError, IndexError, ValueError, AttributeError):
        raise _missing(path) from None
    return document, value
