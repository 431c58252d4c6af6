"""The rules the API server checks that the OpenAPI schema cannot say, each a FieldError naming
the field (`spec.template.spec.containers[0].resources.requests`) in the API server's words:
names and labels (RFC 1123 / 1035, qualified names), a Deployment's selector matching its template
and staying put, limits not below requests, a Service's ports, a Secret's keys and immutability,
an HPA's replica bounds (minReplicas 0 needs the HPAScaleToZero gate, off by default).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Any

from tests.fakes.kubernetes_api.kinds import Kind
from tests.fakes.kubernetes_api.quantity import parse_quantity
from tests.fakes.kubernetes_api.status import FieldError, bad_request

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

MSG_LABEL = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
MSG_SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
MSG_1035 = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
MSG_QUALIFIED = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
MSG_LABEL_VALUE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
    "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
MSG_CONFIG_KEY = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
    "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)
#: Which name rule each kind's metadata.name follows (ValidateObjectMeta's nameFn per type).
NAME_RULES = {"Service": "1035", "Namespace": "label"}


def semantic_errors(kind: Kind, obj: dict, old: dict | None) -> Iterable[FieldError]:
    yield from _object_meta(kind, obj.get("metadata", {}), old)
    spec = obj.get("spec", {})
    if kind.kind == "Deployment":
        yield from _deployment(spec, (old or {}).get("spec"))
    elif kind.kind == "Service":
        yield from _service(spec)
    elif kind.kind == "Secret":
        yield from _secret(obj, old)
    elif kind.kind == "HorizontalPodAutoscaler":
        yield from _hpa(spec)


def _name_errors(field: str, name: str, rule: str) -> Iterable[FieldError]:
    if rule == "1035":
        pattern, message = DNS1035_LABEL, MSG_1035
    elif rule == "label":
        pattern, message = DNS1123_LABEL, MSG_LABEL
    else:
        pattern, message = DNS1123_SUBDOMAIN, MSG_SUBDOMAIN
    limit = 253 if rule == "subdomain" else 63
    if len(name) > limit:
        yield FieldError("FieldValueInvalid", field, f"must be no more than {limit} characters", name)
    if not pattern.match(name):
        yield FieldError("FieldValueInvalid", field, message, name)


def _qualified_name_errors(field: str, key: str) -> Iterable[FieldError]:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        yield FieldError("FieldValueInvalid", field, "prefix part " + MSG_SUBDOMAIN, key)
    if not name or len(name) > 63 or not QUALIFIED_NAME.match(name):
        yield FieldError("FieldValueInvalid", field, MSG_QUALIFIED, key)


def labels_errors(field: str, labels: dict | None) -> Iterable[FieldError]:
    for key, value in (labels or {}).items():
        yield from _qualified_name_errors(field, key)
        if len(value) > 63 or not LABEL_VALUE.match(value):
            yield FieldError("FieldValueInvalid", field, MSG_LABEL_VALUE, value)


def _object_meta(kind: Kind, meta: dict, old: dict | None) -> Iterable[FieldError]:
    name = meta.get("name", "")
    if not name:
        yield FieldError("FieldValueRequired", "metadata.name", "name or generateName is required")
    else:
        yield from _name_errors("metadata.name", name, NAME_RULES.get(kind.kind, "subdomain"))
    yield from labels_errors("metadata.labels", meta.get("labels"))
    for key in meta.get("annotations") or {}:
        yield from _qualified_name_errors("metadata.annotations", key)
    size = sum(len(key) + len(value) for key, value in (meta.get("annotations") or {}).items())
    if size > 256 * 1024:
        yield FieldError("FieldValueTooLong", "metadata.annotations", "must have at most 262144 bytes", size)


def _immutable(field: str, new: Any, old: Any) -> Iterable[FieldError]:
    if old is not None and new != old:
        yield FieldError("FieldValueInvalid", field, "field is immutable", new)


def _selector_matches(selector: dict, labels: dict) -> bool:
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def _deployment(spec: dict, old_spec: dict | None) -> Iterable[FieldError]:
    selector = spec.get("selector") or {}
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        yield FieldError(
            "FieldValueInvalid", "spec.selector", "empty selector is invalid for deployment", selector
        )
    else:
        yield from labels_errors("spec.selector.matchLabels", selector.get("matchLabels"))
        if not _selector_matches(selector, labels):
            yield FieldError(
                "FieldValueInvalid",
                "spec.template.metadata.labels",
                "`selector` does not match template `labels`",
                labels,
            )
    if old_spec is not None:
        yield from _immutable("spec.selector", selector, old_spec.get("selector"))
    yield from labels_errors("spec.template.metadata.labels", labels)
    for field in ("replicas", "minReadySeconds", "revisionHistoryLimit", "progressDeadlineSeconds"):
        if spec.get(field, 0) < 0:
            yield FieldError(
                "FieldValueInvalid", f"spec.{field}", "must be greater than or equal to 0", spec[field]
            )
    if "progressDeadlineSeconds" in spec and spec["progressDeadlineSeconds"] <= spec.get(
        "minReadySeconds", 0
    ):
        yield FieldError(
            "FieldValueInvalid",
            "spec.progressDeadlineSeconds",
            "must be greater than minReadySeconds",
            spec["progressDeadlineSeconds"],
        )
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    if rolling.get("maxUnavailable") in (0, "0%") and rolling.get("maxSurge") in (0, "0%"):
        yield FieldError(
            "FieldValueInvalid",
            "spec.strategy.rollingUpdate.maxUnavailable",
            "may not be 0 when `maxSurge` is 0",
            rolling["maxUnavailable"],
        )
    pod = template.get("spec") or {}
    if pod.get("restartPolicy", "Always") != "Always":
        yield FieldError(
            "FieldValueNotSupported",
            "spec.template.spec.restartPolicy",
            'supported values: "Always"',
            pod["restartPolicy"],
        )
    yield from _pod_spec("spec.template.spec", pod)


def _pod_spec(field: str, pod: dict) -> Iterable[FieldError]:
    seen: set[str] = set()
    containers = pod.get("containers") or []
    if not containers:
        yield FieldError("FieldValueRequired", f"{field}.containers", "")
    for index, container in enumerate(containers):
        at = f"{field}.containers[{index}]"
        name = container.get("name", "")
        yield from _name_errors(f"{at}.name", name, "label")
        if name in seen:
            yield FieldError("FieldValueDuplicate", f"{at}.name", "Duplicate value", name)
        seen.add(name)
        if not container.get("image", "").strip():
            yield FieldError("FieldValueRequired", f"{at}.image", "")
        for port_index, port in enumerate(container.get("ports") or []):
            if not 1 <= port.get("containerPort", 0) <= 65535:
                yield FieldError(
                    "FieldValueInvalid",
                    f"{at}.ports[{port_index}].containerPort",
                    "must be between 1 and 65535, inclusive",
                    port.get("containerPort"),
                )
        for env_index, env in enumerate(container.get("env") or []):
            if not re.match(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", env.get("name", "")):
                yield FieldError(
                    "FieldValueInvalid",
                    f"{at}.env[{env_index}].name",
                    "a valid environment variable name must consist of alphabetic characters, "
                    "digits, '_', '-', or '.', and must not start with a digit",
                    env.get("name"),
                )
        yield from _resources(f"{at}.resources", container.get("resources") or {})


def _resources(field: str, resources: dict) -> Iterable[FieldError]:
    parsed: dict[str, dict] = {}
    for part in ("limits", "requests"):
        parsed[part] = {}
        for name, value in (resources.get(part) or {}).items():
            try:
                parsed[part][name] = parse_quantity(value)
            except ValueError as error:
                raise bad_request(f"quantities must match the regular expression: {error}") from None
            if parsed[part][name] < 0:
                yield FieldError(
                    "FieldValueInvalid",
                    f"{field}.{part}[{name}]",
                    "must be greater than or equal to 0",
                    value,
                )
    for name, request in parsed["requests"].items():
        limit = parsed["limits"].get(name)
        if limit is not None and request > limit:
            yield FieldError(
                "FieldValueInvalid",
                f"{field}.requests",
                f"must be less than or equal to {name} limit of {resources['limits'][name]}",
                resources["requests"][name],
            )


def _service(spec: dict) -> Iterable[FieldError]:
    ports = spec.get("ports") or []
    if spec.get("type", "ClusterIP") != "ExternalName" and not ports:
        yield FieldError("FieldValueRequired", "spec.ports", "")
    names: set[str] = set()
    for index, port in enumerate(ports):
        at = f"spec.ports[{index}]"
        if len(ports) > 1 and not port.get("name"):
            yield FieldError("FieldValueRequired", f"{at}.name", "")
        if port.get("name"):
            yield from _name_errors(f"{at}.name", port["name"], "label")
            if port["name"] in names:
                yield FieldError("FieldValueDuplicate", f"{at}.name", "Duplicate value", port["name"])
            names.add(port["name"])
        if not 1 <= port.get("port", 0) <= 65535:
            yield FieldError(
                "FieldValueInvalid", f"{at}.port", "must be between 1 and 65535, inclusive", port.get("port")
            )
        target = port.get("targetPort")
        if isinstance(target, int) and not 1 <= target <= 65535:
            yield FieldError(
                "FieldValueInvalid", f"{at}.targetPort", "must be between 1 and 65535, inclusive", target
            )
    yield from labels_errors("spec.selector", spec.get("selector"))


def _secret(obj: dict, old: dict | None) -> Iterable[FieldError]:
    total = 0
    for key, value in (obj.get("data") or {}).items():
        if not CONFIG_KEY.match(key):
            yield FieldError("FieldValueInvalid", "data[" + key + "]", MSG_CONFIG_KEY, key)
        try:
            total += len(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raise bad_request(
                f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 0 '
                f"(data[{key}])"
            ) from None
    if total > 1024 * 1024:
        yield FieldError("FieldValueTooLong", "data", "Too long: may not be more than 1048576 bytes", total)
    if old is not None:
        yield from _immutable("type", obj.get("type", "Opaque"), old.get("type", "Opaque"))
        if old.get("immutable") and obj.get("data") != old.get("data"):
            yield FieldError("FieldValueForbidden", "data", "field is immutable when `immutable` is set")


def _hpa(spec: dict) -> Iterable[FieldError]:
    minimum, maximum = spec.get("minReplicas", 1), spec.get("maxReplicas", 0)
    if minimum < 1:  # 0 only with the HPAScaleToZero feature gate, off by default
        yield FieldError(
            "FieldValueInvalid", "spec.minReplicas", "must be greater than or equal to 1", minimum
        )
    if maximum < 1:
        yield FieldError("FieldValueInvalid", "spec.maxReplicas", "must be greater than 0", maximum)
    elif maximum < minimum:
        yield FieldError(
            "FieldValueInvalid", "spec.maxReplicas", "must be greater than or equal to `minReplicas`", maximum
        )
    target = spec.get("scaleTargetRef") or {}
    for field in ("kind", "name"):
        if not target.get(field):
            yield FieldError("FieldValueRequired", f"spec.scaleTargetRef.{field}", "")
    for index, metric in enumerate(spec.get("metrics") or []):
        source = metric.get("resource") or {}
        goal = source.get("target") or {}
        if metric.get("type") == "Resource" and goal.get("type") == "Utilization":
            if goal.get("averageUtilization", 0) <= 0:
                yield FieldError(
                    "FieldValueRequired" if "averageUtilization" not in goal else "FieldValueInvalid",
                    f"spec.metrics[{index}].resource.target.averageUtilization",
                    "must be greater than 0",
                    goal.get("averageUtilization"),
                )
