"""Read the serving settings from the environment, once, at start."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import orjson

FORMATS = ("skops", "onnx", "joblib", "pickle")
FEATURE_TYPES = ("number", "integer", "boolean", "string")
NUMERIC_TYPES = ("number", "integer", "boolean")


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and what to do."""


@dataclass(frozen=True)
class Feature:
    """One input column: its type; the values the model knows, when it knows a closed set
    (`categories`), and whether it takes others (`other_values`); whether it may be missing."""

    name: str
    type: str = "number"
    categories: tuple = ()
    other_values: bool = True
    nullable: bool = False

    @property
    def plain(self) -> bool:
        """A number of any kind, always given, with no closed set of values."""
        return self.type in NUMERIC_TYPES and not self.nullable and (self.other_values or not self.categories)

    def as_json(self) -> dict:
        document: dict = {"name": self.name, "type": self.type}
        if self.categories:
            document["categories"] = list(self.categories)
            document["other_values"] = self.other_values
        if self.nullable:
            document["nullable"] = True
        return document

    @classmethod
    def from_json(cls, entry, where: str) -> Feature:
        """A feature from its JSON form (a name, or an object); ValueError names what is wrong."""
        entry = {"name": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise ValueError(f"{where} needs a name.")
        name, kind = entry["name"], entry.get("type", "number")
        if kind not in FEATURE_TYPES:
            raise ValueError(f"{where} ({name!r}) has type {kind!r}; use one of {', '.join(FEATURE_TYPES)}.")
        categories = entry.get("categories") or ()
        if not isinstance(categories, list | tuple):
            raise ValueError(f"{where} ({name!r}): categories must be a list of the values the model knows.")
        wanted = str if kind == "string" else (int, float)
        for value in categories:
            if not isinstance(value, wanted) or isinstance(value, bool) and kind != "boolean":
                raise ValueError(f"{where} ({name!r}): the category {value!r} is not a {kind}.")
        for flag in ("other_values", "nullable"):
            if not isinstance(entry.get(flag, False), bool):
                raise ValueError(f"{where} ({name!r}): {flag} must be true or false.")
        return cls(
            name,
            kind,
            tuple(categories),
            entry.get("other_values", True),
            entry.get("nullable", False),
        )


@dataclass(frozen=True)
class ModelMeta:
    """What the portal says about the artifact: SERVING_MODEL_META."""

    name: str
    version: int | str
    sha256: str
    format: str
    schema: tuple[Feature, ...] = ()
    classes: tuple = ()
    label_map: dict = field(default_factory=dict)
    trusted_types: tuple[str, ...] = ()
    # A linear model's weights, read from its ONNX form by the portal: {"weights": [[...]],
    # "intercepts": [...], "link": softmax|logistic|identity}. A proposal, checked at start.
    linear_kernel: dict | None = None

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        try:
            raw = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"SERVING_MODEL_META is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError("SERVING_MODEL_META must be a JSON object.")
        sha256 = raw.get("sha256")
        if not isinstance(sha256, str) or len(sha256) != 64:
            raise ConfigError("SERVING_MODEL_META.sha256 must be the artifact's sha256 as 64 hex digits.")
        fmt = raw.get("format")
        if fmt not in FORMATS:
            raise ConfigError(f"SERVING_MODEL_META.format must be one of {', '.join(FORMATS)}, not {fmt!r}.")
        schema = []
        for index, entry in enumerate(raw.get("schema") or ()):
            try:
                schema.append(Feature.from_json(entry, f"SERVING_MODEL_META.schema[{index}]"))
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if len({feature.name for feature in schema}) != len(schema):
            raise ConfigError("SERVING_MODEL_META.schema names a feature twice.")
        label_map = raw.get("label_map") or {}
        if not isinstance(label_map, dict):
            raise ConfigError("SERVING_MODEL_META.label_map must be an object of class -> label.")
        return cls(
            name=str(raw.get("name") or "model"),
            version=raw.get("version", ""),
            sha256=sha256.lower(),
            format=fmt,
            schema=tuple(schema),
            classes=tuple(raw.get("classes") or ()),
            label_map={str(key): value for key, value in label_map.items()},
            trusted_types=tuple(raw.get("trusted_types") or ()),
            linear_kernel=_linear_kernel(raw.get("linear_kernel")),
        )


LINKS = ("softmax", "logistic", "identity")


def _linear_kernel(value) -> dict | None:
    """SERVING_MODEL_META.linear_kernel, checked for shape (its numbers are checked at start)."""
    if value is None:
        return None
    problem = "SERVING_MODEL_META.linear_kernel must be {weights: [[numbers]], intercepts: [numbers], link}"
    if not isinstance(value, dict) or value.get("link") not in LINKS:
        raise ConfigError(f"{problem}, link one of {', '.join(LINKS)}.")
    weights, intercepts = value.get("weights"), value.get("intercepts")
    rows = weights if isinstance(weights, list) and weights else None
    numbers = (int, float)
    if (
        rows is None
        or not all(isinstance(row, list) and row and all(isinstance(x, numbers) for x in row) for row in rows)
        or len({len(row) for row in rows}) != 1
        or not isinstance(intercepts, list)
        or len(intercepts) != len(rows)
        or not all(isinstance(x, numbers) for x in intercepts)
    ):
        raise ConfigError(f"{problem}, one intercept per row of weights.")
    return {"weights": weights, "intercepts": intercepts, "link": value["link"]}


def _int(name: str, default: int, minimum: int = 0) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, not {text!r}.") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}.")
    return value


def _float(name: str, default: float, *, zero: bool = False) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {text!r}.") from None
    if not (value >= 0 if zero else value > 0):
        raise ConfigError(f"{name} must be {'zero or more' if zero else 'positive'}.")
    return value


def _fraction(name: str, default: float) -> float:
    value = _float(name, default, zero=True)
    if value > 1:
        raise ConfigError(f"{name} must be a fraction between 0 and 1 (0.01 is one in a hundred).")
    return value


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _switch(name: str, default: bool) -> bool:
    text = os.environ.get(name, "").strip().lower()
    if not text:
        return default
    if text not in ("on", "off"):
        raise ConfigError(f"{name} must be on or off, not {text!r}.")
    return text == "on"


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Settings:
    model_uri: str
    meta: ModelMeta
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 1
    allow_pickle: bool = False
    accelerate: bool = True
    access_file: str | None = None
    control_socket: str | None = None
    handoff_from: str | None = None
    # A canary's socket for the requests a stable revision forwards to it (see canary.py).
    forward_socket: str | None = None
    # With a control socket: exit unless told to serve this long after start (the deploy that
    # started this process is gone, or a later revision serves the endpoint).
    serve_within: float = 300.0
    max_body_bytes: int = 1_572_864
    max_header_bytes: int = 16_384
    max_rows: int = 10_000
    keepalive_timeout: float = 5.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    model_cache_dir: str | None = None
    download_wait: float = 180.0
    microbatch: bool = True
    microbatch_max_rows: int = 64
    microbatch_wait_us: int = 0
    # The request log (see request_log.py): the share of successes logged, the most refusals
    # logged per worker and second, and the revision named in each line.
    log_success_sample: float = 0.001
    log_refused_per_second: int = 1000
    revision: str | None = None
    # The identity mode (see identity.py): clock skew allowed on a token's times, how long signing
    # keys are kept before they are fetched again, the least time between fetches for an unknown
    # key id.
    jwt_leeway: float = 30.0
    jwks_ttl: float = 300.0
    jwks_refresh: float = 30.0
    # Labels added to every metric: which endpoint and revision this process serves (the local
    # runtime sets SERVING_ENDPOINT and SERVING_REVISION; Cloud Run sets K_SERVICE and K_REVISION).
    # `endpoint_name`, not `endpoint`: Prometheus's Kubernetes discovery gives targets an `endpoint`.
    metric_labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Settings:
        uri = os.environ.get("SERVING_MODEL_URI", "").strip()
        if not uri:
            raise ConfigError("SERVING_MODEL_URI is not set: give the model artifact's path or gs:// URL.")
        meta_text = os.environ.get("SERVING_MODEL_META", "").strip()
        if not meta_text:
            raise ConfigError("SERVING_MODEL_META is not set: give the model's metadata as JSON.")
        return cls(
            model_uri=uri,
            meta=ModelMeta.from_json(meta_text),
            host=os.environ.get("SERVING_HOST", "").strip() or "0.0.0.0",
            port=_int("PORT", 8080),
            workers=_int("SERVING_WORKERS", _cpus(), minimum=1),
            allow_pickle=_flag("SERVING_ALLOW_PICKLE"),
            accelerate=os.environ.get("SERVING_ACCELERATE", "true").strip().lower()
            not in ("0", "false", "no"),
            access_file=os.environ.get("SERVING_ACCESS_FILE") or None,
            control_socket=os.environ.get("SERVING_CONTROL_SOCKET") or None,
            handoff_from=os.environ.get("SERVING_HANDOFF_FROM") or None,
            forward_socket=os.environ.get("SERVING_FORWARD_SOCKET") or None,
            serve_within=_float("SERVING_SERVE_WITHIN_SECONDS", 300.0),
            max_body_bytes=_int("SERVING_MAX_BODY_BYTES", 1_572_864, minimum=1),
            max_header_bytes=_int("SERVING_MAX_HEADER_BYTES", 16_384, minimum=1024),
            max_rows=_int("SERVING_MAX_ROWS", 10_000, minimum=1),
            keepalive_timeout=_float("SERVING_KEEPALIVE_TIMEOUT", 5.0),
            header_timeout=_float("SERVING_HEADER_TIMEOUT", 10.0),
            body_timeout=_float("SERVING_BODY_TIMEOUT", 30.0),
            model_cache_dir=os.environ.get("SERVING_MODEL_CACHE_DIR") or None,
            download_wait=_float("SERVING_DOWNLOAD_WAIT_SECONDS", 180.0, zero=True),
            microbatch=_switch("SERVING_MICROBATCH", True),
            microbatch_max_rows=_int("SERVING_MICROBATCH_MAX_ROWS", 64, minimum=1),
            microbatch_wait_us=_int("SERVING_MICROBATCH_WAIT_US", 0),
            log_success_sample=_fraction("SERVING_LOG_SUCCESS_SAMPLE", 0.001),
            log_refused_per_second=_int("SERVING_LOG_REFUSED_PER_SECOND", 1000, minimum=1),
            # Cloud Run names the revision in K_REVISION; the local runtime in SERVING_REVISION.
            revision=os.environ.get("SERVING_REVISION") or os.environ.get("K_REVISION") or None,
            jwt_leeway=_float("SERVING_JWT_LEEWAY_SECONDS", 30.0, zero=True),
            jwks_ttl=_float("SERVING_JWKS_TTL_SECONDS", 300.0),
            jwks_refresh=_float("SERVING_JWKS_REFRESH_SECONDS", 30.0, zero=True),
            metric_labels=_metric_labels(),
        )


def _metric_labels() -> dict[str, str]:
    labels = {
        "endpoint_name": os.environ.get("SERVING_ENDPOINT") or os.environ.get("K_SERVICE") or "",
        "revision": os.environ.get("SERVING_REVISION") or os.environ.get("K_REVISION") or "",
    }
    return {name: value.strip() for name, value in labels.items() if value.strip()}
