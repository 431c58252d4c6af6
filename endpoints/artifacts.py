"""Read an uploaded model artifact: check it is a fitted estimator and extract its schema.

Everything here that opens an artifact runs only inside the sandbox (`endpoints/sandbox/`), never
in a process that holds secrets: `run_job` is its entry point. This module imports no Django.

skops files are listed before they are loaded: a file loads only if skops finds no type outside
its own default trust, or if an admin trusted exactly the types it lists, each of which must be a
class (a trusted function or method could be called with any arguments). joblib and pickle files
run code when loaded, so they are opened only when the uploader explicitly trusted them. ONNX
files run no code; they need the schema given at upload, since ONNX does not name features. A zip
(skops) whose members would expand past a limit is refused before anything is expanded.

Each scikit-learn model is also converted to ONNX, with the serving container's own conversion
and check: the ONNX form is kept only if it gives the model's answers on a fixed sample.
"""

import dataclasses
import importlib
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from endpoints.examples import ExampleError, given_examples, model_examples, row_table, schema_examples
from serving.artifacts import file_digest
from serving.config import Feature
from serving.tabular import (
    FrameBackend,
    infer_features,
    needs_table,
    replace_feature,
    table_sample,
    with_missing,
)

SCHEMA_KEYS = {"name", "type", "categories", "other_values", "nullable"}
EXTENSIONS = {".skops": "skops", ".onnx": "onnx", ".joblib": "joblib", ".pkl": "pickle", ".pickle": "pickle"}


class ArtifactError(ValueError):
    """The file is not a usable model, or does not match what was said about it."""

    def __init__(self, message: str, *, field: str = "artifact", untrusted_types: list[str] | None = None):
        super().__init__(message)
        self.field = field
        self.untrusted_types = untrusted_types or []


@dataclass(frozen=True)
class ArtifactInfo:
    format: str
    sha256: str
    size_bytes: int
    input_schema: list[dict]
    classes: list = field(default_factory=list)
    trusted_types: list[str] = field(default_factory=list)
    estimator: str = ""
    sklearn_version: str = ""
    onnx: bytes | None = None  # the verified ONNX form of a scikit-learn model
    onnx_note: str = ""
    # Example rows for the playground: given at upload or read from the model (endpoints.examples).
    examples: dict = field(default_factory=dict)


def format_for(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    if suffix not in EXTENSIONS:
        raise ArtifactError(
            f"Unsupported file type {suffix or '(none)'!r}: upload a .skops or .onnx file "
            "(or, as an admin who trusts it, .joblib / .pkl)."
        )
    return EXTENSIONS[suffix]


def skops_untrusted_types(path: Path) -> list[str]:
    import skops.io as sio

    try:
        return sio.get_untrusted_types(file=path)
    except zipfile.BadZipFile:
        raise ArtifactError("This is not a skops file (it is not a zip archive).") from None
    except Exception as exc:
        raise ArtifactError(f"The skops file could not be read: {exc}") from None


def parse_schema(raw, n_features: int, names_in_model: list[str] | None) -> list[dict]:
    """The schema given at upload, checked against the model: an entry per feature, in column order,
    holding only what was given (a bare name gives the name; an object may also give the type, the
    known values, whether others are taken and whether it may be missing)."""
    if raw in (None, "", []):
        if names_in_model is None:
            raise ArtifactError(
                "The model was fitted without feature names: give the input schema "
                f"({n_features} feature names, in column order).",
                field="input_schema",
            )
        return [{"name": name} for name in names_in_model]
    if not isinstance(raw, list):
        raise ArtifactError(
            'The input schema must be a JSON list of feature names or of {"name": ..., "type": ...} objects.',
            field="input_schema",
        )
    schema = []
    for index, item in enumerate(raw):
        entry = {"name": item} if isinstance(item, str) else item
        try:
            Feature.from_json(entry, f"Schema entry {index}")
        except ValueError as exc:
            raise ArtifactError(str(exc), field="input_schema") from None
        unknown = set(entry) - SCHEMA_KEYS
        if unknown:
            raise ArtifactError(
                f"Schema entry {index} ({entry['name']!r}) has unknown keys {sorted(unknown)}; "
                f"use {', '.join(sorted(SCHEMA_KEYS))}.",
                field="input_schema",
            )
        schema.append(dict(entry))
    names = [entry["name"] for entry in schema]
    if len(set(names)) != len(names):
        raise ArtifactError("Feature names in the schema must be unique.", field="input_schema")
    if len(schema) != n_features:
        raise ArtifactError(
            f"The schema names {len(schema)} features but the model takes {n_features}.",
            field="input_schema",
        )
    if names_in_model is not None and names != names_in_model:
        raise ArtifactError(
            f"The schema does not match the model's feature names: the model expects {names_in_model}.",
            field="input_schema",
        )
    return schema


def merged_features(given: list[dict], inferred: list[Feature] | None = None) -> list[Feature]:
    """What the admin gave, completed by what the model says (inferred) where the admin said nothing."""
    features = []
    for index, entry in enumerate(given):
        base = inferred[index].as_json() if inferred else {}
        if "type" in entry and entry.get("type") != base.get("type"):
            base = {}  # another type: the model's known values are not this one's
        try:
            features.append(Feature.from_json({**base, **entry}, f"Schema entry {index}"))
        except ValueError as exc:
            raise ArtifactError(str(exc), field="input_schema") from None
    return features


def parse_label_map(raw, classes: list) -> dict:
    if raw in (None, "", {}):
        return {}
    if not isinstance(raw, dict):
        raise ArtifactError(
            'The label map must be a JSON object such as {"0": "<=50K", "1": ">50K"}.',
            field="label_map",
        )
    if not classes:
        raise ArtifactError("A label map needs a classifier; this model has no classes.", field="label_map")
    known = {str(cls) for cls in classes}
    unknown = sorted(set(map(str, raw)) - known)
    if unknown:
        raise ArtifactError(
            f"The label map names classes the model does not have: {unknown}; its classes are "
            f"{sorted(known)}.",
            field="label_map",
        )
    if not all(isinstance(value, str) and value for value in raw.values()):
        raise ArtifactError("Every label in the label map must be a non-empty string.", field="label_map")
    return {str(key): value for key, value in raw.items()}


def _json_scalar(value):
    return value.item() if isinstance(value, np.generic) else value


def check_zip(path: Path, max_expanded_bytes: int) -> None:
    """Refuse a zip whose members would expand past `max_expanded_bytes`, before expanding any.

    The sizes come from the central directory; Python's zipfile never expands a member past its
    recorded size (it stops there and fails the CRC check), so the recorded sizes bound the work.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile:
        raise ArtifactError("This is not a skops file (it is not a zip archive).") from None
    expanded = sum(member.file_size for member in members)
    if expanded > max_expanded_bytes:
        raise ArtifactError(
            f"This skops file would expand to {expanded:,} bytes ({len(members)} members); the limit "
            f"is {max_expanded_bytes:,} bytes (MODEL_EXPANDED_MAX_BYTES)."
        )


def _resolve(name: str):
    """The object a dotted type name refers to, importing the longest module prefix it names."""
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                found = getattr(found, attribute)
        except AttributeError:
            return None
        return found
    return None


#: Functions (not classes) that scikit-learn's own fitted estimators keep, which only check an
#: array when called: histogram gradient boosting with native categories keeps check_array in a
#: FunctionTransformer for its numeric columns. The admin still trusts them by name.
SAFE_FUNCTIONS = frozenset({"sklearn.utils.validation.check_array"})


def check_trust(untrusted: list[str], trusted: list[str]) -> None:
    """A skops file loads only if every type it lists is a class (or one of SAFE_FUNCTIONS) the
    admin trusted by name."""
    not_classes = []
    for name in untrusted:
        found = _resolve(name)
        if not isinstance(found, type) and name not in SAFE_FUNCTIONS:
            kind = "cannot be found" if found is None else f"is a {type(found).__name__}, not a class"
            not_classes.append(f"{name} ({kind})")
    if not_classes:
        raise ArtifactError(
            "This skops file would call names that are not classes, which can run any code: "
            f"{'; '.join(not_classes)}. It is refused even when trusted.",
            field="trusted_types",
        )
    missing = [name for name in untrusted if name not in trusted]
    if missing:
        raise ArtifactError(
            "This skops file uses types outside skops' default trust: "
            f"{', '.join(missing)}. An admin who trusts them must accept exactly these types "
            "(trusted_types) to load it.",
            field="trusted_types",
            untrusted_types=untrusted,
        )


def inspect_artifact(
    path: Path,
    fmt: str,
    *,
    trust_code: bool,
    trusted_types: list[str] | None = None,
    schema=None,
    max_expanded_bytes: int = 1 << 31,
    example=None,
) -> ArtifactInfo:
    """Check the file is a fitted model that answers a prediction, and describe it (in the sandbox).

    `example` is the example row (or rows) the admin gave, if any: checked against the schema and
    on the model; without it, example rows are read from the model (`endpoints.examples`).
    """
    sha256, size = file_digest(path)
    if fmt == "onnx":
        return _inspect_onnx(path, sha256, size, schema, example)
    from serving.model import PICKLED, ModelError, load_estimator

    trusted: list[str] = []
    if fmt == "skops":
        check_zip(path, max_expanded_bytes)
        trusted = skops_untrusted_types(path)
        check_trust(trusted, list(trusted_types or []))
    elif fmt in PICKLED and not trust_code:
        raise ArtifactError(
            f"A {fmt} file runs code when it is loaded. Upload a .skops file instead, or, as an "
            'admin, tick "I trust this file, it runs code when loaded".'
        )
    try:
        estimator = load_estimator(path, fmt, trusted, allow_pickle=trust_code)
    except ModelError as exc:
        raise ArtifactError(str(exc)) from None
    if not hasattr(estimator, "predict") or not hasattr(estimator, "n_features_in_"):
        raise ArtifactError(
            f"The file holds a {type(estimator).__name__}, not a fitted scikit-learn estimator."
        )
    n_features = int(estimator.n_features_in_)
    names_in = getattr(estimator, "feature_names_in_", None)
    names_in = [str(name) for name in names_in] if names_in is not None else None
    given = parse_schema(schema, n_features, names_in)
    features = merged_features(given, infer_features(estimator, [entry["name"] for entry in given]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        features = _checked_features(estimator, features, names_in, given)
        examples = _examples(estimator, features, names_in, example)
    input_schema = [feature.as_json() for feature in features]
    classes = [_json_scalar(cls) for cls in getattr(estimator, "classes_", [])]
    described = f"{type(estimator).__module__}.{type(estimator).__qualname__}"
    sklearn_version = str(getattr(estimator, "_sklearn_version", "") or _sklearn_version())
    onnx, onnx_note = onnx_form(estimator, input_schema)
    return ArtifactInfo(
        format=fmt,
        sha256=sha256,
        size_bytes=size,
        input_schema=input_schema,
        classes=classes,
        trusted_types=trusted,
        estimator=described,
        sklearn_version=sklearn_version,
        onnx=onnx,
        onnx_note=onnx_note,
        examples=examples,
    )


def _given_examples(example, features: list[Feature]) -> dict | None:
    """The admin's example rows, checked against the schema (None when none were given)."""
    if example in (None, "", [], {}):
        return None
    try:
        return given_examples(example, features)
    except ExampleError as exc:
        raise ArtifactError(str(exc), field="example") from None


def _examples(estimator, features: list[Feature], names: list[str] | None, example) -> dict:
    """The example rows to keep: the admin's, which the model must answer, else the model's own
    (or, should the model fail on those, the schema's)."""
    given = _given_examples(example, features)
    found = given or model_examples(estimator, features, [feature.name for feature in features])
    plain = all(feature.plain for feature in features) and not needs_table(estimator)
    try:
        if plain:
            rows = [[float(row[feature.name]) for feature in features] for row in found["rows"]]
            estimator.predict(np.asarray(rows, dtype=np.float64))
        else:
            FrameBackend(estimator, features, names).predict(row_table(found["rows"], features))
    except MemoryError:
        raise
    except Exception as exc:
        if given is not None:
            raise ArtifactError(f"The model fails on the example: {exc}", field="example") from None
        return schema_examples([feature.as_json() for feature in features])
    return found


def _checked_features(estimator, features: list[Feature], names: list[str] | None, given: list[dict]):
    """The features, once the model has answered on rows of them: plain numbers (a row of zeros),
    or a table of every known value, and, for each feature that may be missing, the same table with
    it missing. A feature the model was only thought to take missing stops being nullable if it
    fails; one the admin said may be missing is an error if it fails."""
    plain = all(feature.plain for feature in features) and not needs_table(estimator)
    if plain:
        try:
            estimator.predict(np.zeros((1, len(features))))
        except MemoryError:
            raise  # the sandbox reports the limit
        except Exception as exc:
            raise ArtifactError(f"The model could not make a prediction on a test row: {exc}") from None
        return features
    backend = FrameBackend(estimator, features, names)
    sample = table_sample(features, missing=False)
    try:
        backend.predict(sample)
    except MemoryError:
        raise
    except Exception as exc:
        raise ArtifactError(
            f"The model could not make predictions on rows of its features ({_describe(features)}): {exc}",
            field="input_schema",
        ) from None
    checked = []
    for column, feature in enumerate(features):
        if feature.nullable:
            try:
                backend.predict(with_missing(sample, column))
            except MemoryError:
                raise
            except Exception as exc:
                if given[column].get("nullable"):
                    raise ArtifactError(
                        f"The model fails when {feature.name} is missing ({exc}); it cannot be nullable.",
                        field="input_schema",
                    ) from None
                feature = replace_feature(feature, nullable=False)
        checked.append(feature)
    return checked


def _describe(features: list[Feature]) -> str:
    return ", ".join(f"{feature.name} ({feature.type})" for feature in features)


ONNX_FILE = "model.onnx"


def run_job(folder: Path, job: dict) -> dict:
    """The sandbox's entry point: inspect `folder/<job["artifact"]>`; a JSON-able answer.

    The ONNX form, when there is one, is written to `folder/model.onnx`. A job with "examples_only"
    reads only the example rows of an artifact already registered (`stored_examples`).
    """
    if job.get("examples_only"):
        try:
            return {"ok": True, "examples": stored_examples(folder / job["artifact"], job)}
        except ArtifactError as exc:
            return {"ok": False, "error": str(exc), "field": exc.field}
    try:
        info = inspect_artifact(
            folder / job["artifact"],
            job["format"],
            trust_code=bool(job.get("trust_code")),
            trusted_types=job.get("trusted_types") or [],
            schema=job.get("schema"),
            max_expanded_bytes=int(job["max_expanded_bytes"]),
            example=job.get("example"),
        )
    except ArtifactError as exc:
        return {"ok": False, "error": str(exc), "field": exc.field, "untrusted_types": exc.untrusted_types}
    document = dataclasses.asdict(info)
    onnx = document.pop("onnx")
    if onnx is not None:
        (folder / ONNX_FILE).write_bytes(onnx)
    return {"ok": True, "info": document, "onnx_file": ONNX_FILE if onnx is not None else ""}


def stored_examples(path: Path, job: dict) -> dict:
    """The example rows of a version registered before they were kept, read from its artifact as
    an upload reads them: the stored schema (complete) is the features; the artifact loads with
    the trust it was registered with."""
    from serving.model import ModelError, load_estimator

    features = [Feature.from_json(entry, "schema") for entry in job["schema"]]
    if job["format"] == "onnx":
        return schema_examples(job["schema"])
    if job["format"] == "skops":
        check_zip(path, int(job["max_expanded_bytes"]))
        check_trust(skops_untrusted_types(path), list(job.get("trusted_types") or []))
    try:
        estimator = load_estimator(
            path, job["format"], job.get("trusted_types") or [], allow_pickle=bool(job.get("trust_code"))
        )
    except ModelError as exc:
        raise ArtifactError(str(exc)) from None
    names = getattr(estimator, "feature_names_in_", None)
    names = [str(name) for name in names] if names is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _examples(estimator, features, names, None)


def info_from_job(folder: Path, result: dict) -> ArtifactInfo:
    """The ArtifactInfo a sandbox job answered, or the ArtifactError it reported."""
    if not result.get("ok"):
        raise ArtifactError(
            result.get("error") or "The file could not be inspected.",
            field=result.get("field") or "artifact",
            untrusted_types=result.get("untrusted_types"),
        )
    onnx_file = result.get("onnx_file")
    onnx = (folder / onnx_file).read_bytes() if onnx_file else None
    return ArtifactInfo(**result["info"], onnx=onnx)


def warm_up() -> None:
    """Run one small inspection so lazily loaded converters are in memory before the first job."""
    import tempfile

    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    rows = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [1.0, 1.0]])
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "warm.skops"
        sio.dump(LogisticRegression().fit(rows, [0, 1, 0, 1]), path)
        inspect_artifact(path, "skops", trust_code=False, schema=["a", "b"])


def _serving_meta(input_schema: list[dict], fmt: str, classes=()):
    from serving.config import ModelMeta

    features = tuple(Feature.from_json(entry, "schema") for entry in input_schema)
    return ModelMeta(name="upload", version="", sha256="0" * 64, format=fmt, schema=features, classes=classes)


def onnx_form(estimator, input_schema: list[dict]) -> tuple[bytes | None, str]:
    """The model converted to ONNX and checked against it, or None; and a note saying which or why not.

    A table model's form is not stored: the server converts and checks it when it starts, and
    keeps scikit-learn beside it for the rare row the form cannot be fed (see serving.onnx_tables).
    """
    from serving import splits
    from serving.model import Model, ModelError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = Model.from_estimator(estimator, _serving_meta(input_schema, "skops"))
            final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
            if splits.native_categories(final):
                return None, (
                    "No ONNX form: skl2onnx converts histogram gradient boosting's category splits "
                    "as number thresholds; scikit-learn serves it."
                )
            if not model.plans:
                return None, "No ONNX form: skl2onnx cannot convert this model; scikit-learn serves it."
            plan = model.verified_onnx()
        except ModelError as exc:
            return None, f"No ONNX form: {exc}"
    if plan is None:
        why = (
            "; ".join(model.refusals)
            or "the converted model's answers differ from scikit-learn's on the check sample"
        )
        return None, _note(f"No ONNX form: {why}", "; scikit-learn serves it.")
    if not model.plain:
        return None, (
            f"ONNX Runtime serves it ({plan.precision}), converted when the server starts: it gives "
            "scikit-learn's answers on every known value, each missing column and rows on its splits."
        )
    return plan.onnx_bytes, f"ONNX ({plan.precision}), gives scikit-learn's answers on the check sample."


def _note(text: str, ending: str, limit: int = 300) -> str:
    """`text` + `ending`, shortened to fit the version's note."""
    room = limit - len(ending)
    return (text if len(text) <= room else text[: room - 1] + "…") + ending


def _inspect_onnx(path: Path, sha256: str, size: int, schema, example=None) -> ArtifactInfo:
    """An ONNX file: one float input of rows; classes read from the graph; features from the schema."""
    from serving import onnx_graph
    from serving.model import Model, ModelError

    data = path.read_bytes()
    try:
        width = onnx_graph.input_width(data)
        classes = onnx_graph.class_labels(data) or []
    except Exception as exc:
        raise ArtifactError(f"This is not a readable ONNX model: {exc}") from None
    if schema in (None, "", []):
        raise ArtifactError(
            "ONNX files do not name their features: give the input schema (feature names, in column order).",
            field="input_schema",
        )
    given = parse_schema(schema, width or (len(schema) if isinstance(schema, list) else 0), None)
    features = merged_features(given)
    input_schema = [feature.as_json() for feature in features]
    examples = _given_examples(example, features) or schema_examples(input_schema)
    try:
        model = Model.from_onnx(data, _serving_meta(input_schema, "onnx", tuple(classes)))
        model.start()
    except ModelError as exc:
        raise ArtifactError(str(exc)) from None
    return ArtifactInfo(
        format="onnx",
        sha256=sha256,
        size_bytes=size,
        input_schema=input_schema,
        classes=classes,
        estimator=_onnx_producer(data),
        examples=examples,
    )


def _onnx_producer(data: bytes) -> str:
    import onnx

    proto = onnx.load_model_from_string(data)
    producer = " ".join(part for part in (proto.producer_name, proto.producer_version) if part)
    return f"ONNX ({producer})" if producer else "ONNX"


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__
