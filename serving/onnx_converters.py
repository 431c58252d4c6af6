"""Converters registered with skl2onnx before a model is converted.

- Histogram gradient boosting: skl2onnx's converter (1.20) gives ONNX boolean flags where the
  protobuf runtime wants integers, and in float64 it declares the trees' float32 scores as doubles.
  Both are mended around the unchanged converter: the splits stay in float64, as scikit-learn
  compares them, and the scores are cast.
- SimpleImputer where missing values are NaN: numbers are filled in the input's precision (ONNX
  Runtime's Imputer takes float32 only); text, whose tensors cannot hold NaN, is given missing
  values as MISSING_TEXT, which the table backend writes for them.
- XGBoost's and LightGBM's scikit-learn wrappers, with onnxmltools' converters, as skl2onnx's
  documentation shows ("Convert a pipeline with a LightGBM classifier").

Every form is still checked against scikit-learn before it is used.
"""

from __future__ import annotations

import copy

import numpy as np

# What a missing text value is fed as: no JSON string a client sends is taken for it (see
# OnnxTableBackend, which hands rows holding this very string to scikit-learn).
MISSING_TEXT = "\x00missing\x00"
TREE_ENSEMBLES = ("TreeEnsembleClassifier", "TreeEnsembleRegressor")
DOUBLE_ATTRIBUTES = ("nodes_values", "nodes_hitrates", "base_values", "class_weights", "target_weights")

_registered = False


class _MendedTrees:
    """A converter's container whose tree nodes take boolean flags as integers and, fed float64,
    keep their splits and leaves in float64 (ONNX's `*_as_tensor` attributes, ai.onnx.ml 3);
    such nodes give float32 scores, cast to the float64 the graph declares."""

    def __init__(self, container, scope, double: bool):
        self._container = container
        self._scope = scope
        self._double = double

    def __getattr__(self, name):
        return getattr(self._container, name)

    def add_node(self, op_type, inputs, outputs, **attrs):
        for key, value in attrs.items():
            if isinstance(value, list) and any(isinstance(item, bool | np.bool_) for item in value):
                attrs[key] = [int(item) for item in value]
        if op_type not in TREE_ENSEMBLES or not self._double:
            return self._container.add_node(op_type, inputs, outputs, **attrs)
        from onnx import TensorProto, numpy_helper

        for key in DOUBLE_ATTRIBUTES:
            if key in attrs:
                values = np.asarray(attrs.pop(key), dtype=np.float64).ravel()
                attrs[f"{key}_as_tensor"] = numpy_helper.from_array(values, name="")
        attrs["op_version"] = 3
        outputs = [outputs] if isinstance(outputs, str) else list(outputs)
        scores = 1 if op_type == "TreeEnsembleClassifier" else 0
        wanted = outputs[scores]
        outputs[scores] = self._scope.get_unique_variable_name("float32_scores")
        self._container.add_node(op_type, inputs, outputs, **attrs)
        self._container.add_node(
            "Cast",
            [outputs[scores]],
            [wanted],
            to=TensorProto.DOUBLE,
            name=self._scope.get_unique_operator_name("scores_to_float64"),
        )


def _mended(convert, *, takes_version: bool):
    def converter(scope, operator, container):
        from skl2onnx.common.data_types import DoubleTensorType

        double = isinstance(operator.inputs[0].type, DoubleTensorType)
        mended = _MendedTrees(container, scope, double)
        if double and takes_version:  # skl2onnx's tree converters round to float32 below version 3
            convert(scope, operator, mended, op_version=3)
        else:
            convert(scope, operator, mended)

    return converter


def _imputer(convert):
    def converter(scope, operator, container):
        from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

        imputer = operator.raw_operator
        nan = isinstance(imputer.missing_values, float) and np.isnan(imputer.missing_values)
        kind = type(operator.inputs[0].type)
        if nan and kind is StringTensorType:
            operator.raw_operator = copy.copy(imputer)
            operator.raw_operator.missing_values = MISSING_TEXT
        elif nan and kind in (DoubleTensorType, FloatTensorType) and not imputer.add_indicator:
            _fill_numbers(scope, operator, container, kind is DoubleTensorType)
            return
        convert(scope, operator, container)

    return converter


def _fill_numbers(scope, operator, container, double: bool) -> None:
    """Where(IsNaN(x), statistics, x), in the input's precision."""
    from onnx import TensorProto
    from skl2onnx.operator_converters.common import concatenate_variables

    statistics = np.asarray(operator.raw_operator.statistics_, dtype=np.float64)
    if np.isnan(statistics).any():
        raise NotImplementedError("an imputed column had no values when fitted")
    proto = TensorProto.DOUBLE if double else TensorProto.FLOAT
    values = statistics if double else statistics.astype(np.float32)
    joined = concatenate_variables(scope, operator.inputs, container)
    fill = scope.get_unique_variable_name("fill")
    container.add_initializer(fill, proto, [1, len(values)], values.tolist())
    missing = scope.get_unique_variable_name("missing")
    container.add_node("IsNaN", [joined], [missing], name=scope.get_unique_operator_name("IsNaN"))
    container.add_node(
        "Where",
        [missing, fill, joined],
        [operator.outputs[0].full_name],
        name=scope.get_unique_operator_name("Where"),
    )


CLASSIFIER_OPTIONS = {"zipmap": [True, False, "columns"], "nocl": [True, False]}


def register() -> None:
    """Register the converters above with skl2onnx (once per process)."""
    global _registered
    if _registered:
        return
    from skl2onnx import update_registered_converter
    from skl2onnx.common._registration import get_converter, get_shape_calculator
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer

    for model, alias in (
        (HistGradientBoostingClassifier, "SklearnHistGradientBoostingClassifier"),
        (HistGradientBoostingRegressor, "SklearnHistGradientBoostingRegressor"),
        (SimpleImputer, "SklearnSimpleImputer"),
    ):
        registered = get_converter(alias)
        convert = (
            _imputer(registered._fct)
            if model is SimpleImputer
            else _mended(registered._fct, takes_version=True)
        )
        update_registered_converter(
            model,
            alias,
            get_shape_calculator(alias),
            convert,
            options=registered.get_allowed_options(),
        )
    _register_boosters(update_registered_converter)
    _registered = True


def _register_boosters(update) -> None:
    """XGBoost and LightGBM, where they and onnxmltools are installed."""
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    try:
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    except ImportError:
        return
    for module, names, convert in (
        ("xgboost", ("XGBClassifier", "XGBRegressor"), convert_xgboost),
        ("lightgbm", ("LGBMClassifier", "LGBMRegressor"), convert_lightgbm),
    ):
        try:
            library = __import__(module)
        except ImportError:
            continue
        prefix = "XGBoost" if module == "xgboost" else "LightGbm"
        for name in names:
            classifier = name.endswith("Classifier")
            update(
                getattr(library, name),
                prefix + name,
                calculate_linear_classifier_output_shapes
                if classifier
                else calculate_linear_regressor_output_shapes,
                _mended(convert, takes_version=False),
                options=CLASSIFIER_OPTIONS if classifier else None,
            )
