"""Read what an ONNX model is made of: its class labels, and the weights of a linear model.

Both are proposals. The caller checks the classes against what the session answers, and the
linear kernel against the session itself on a fixed sample, before either is used.
"""

from __future__ import annotations

import numpy as np

from serving.backends import LinearRowKernel

CLASS_LABEL_ATTRIBUTES = ("classlabels_int64s", "classlabels_strings", "classlabels_ints")
# Elementwise steps skl2onnx puts before a linear model's MatMul (StandardScaler and the like).
AFFINE_STEPS = ("Sub", "Div", "Mul", "Add")


def _graph(data: bytes):
    import onnx

    return onnx.load_model_from_string(data).graph


def _initializers(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}


def input_width(data: bytes) -> int | None:
    """The number of columns the one input takes, when the graph fixes it."""
    inputs = _graph(data).input
    if len(inputs) != 1:
        return None
    dims = inputs[0].type.tensor_type.shape.dim
    return dims[1].dim_value or None if len(dims) == 2 else None


def class_labels(data: bytes) -> list | None:
    """The classes a classifier graph names, in order; None if it names none.

    ai.onnx.ml classifiers carry them as an attribute; skl2onnx's double-precision linear
    classifiers pick the label out of a constant array with ArrayFeatureExtractor.
    """
    from onnx import helper

    graph = _graph(data)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.name in CLASS_LABEL_ATTRIBUTES:
                values = helper.get_attribute_value(attribute)
                return [value.decode() if isinstance(value, bytes) else int(value) for value in values]
    constants = _initializers(graph)
    for node in graph.node:
        if node.op_type == "ArrayFeatureExtractor" and node.input[0] in constants:
            values = constants[node.input[0]].ravel().tolist()
            return [value.decode() if isinstance(value, bytes) else value for value in values]
    return None


def linear_kernel(data: bytes) -> LinearRowKernel | None:
    """A one-row kernel for a graph that is an affine map of the input, then MatMul, Add and a link.

    This is the shape skl2onnx gives LogisticRegression and linear regressors (after StandardScaler)
    in double precision. Anything else gives None.
    """
    graph = _graph(data)
    constants = _initializers(graph)
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    if len(graph.input) != 1:
        return None
    tensor = graph.input[0].name
    scale = offset = None  # the input seen by MatMul is scale * x + offset
    while True:
        following = consumers.get(tensor, [])
        if len(following) != 1:
            return None
        node = following[0]
        operand = _constant_operand(node, tensor, constants)
        if node.op_type == "MatMul" and operand is not None and operand.ndim == 2:
            weights = operand
            break
        if node.op_type not in AFFINE_STEPS or operand is None:
            return None
        value = operand.astype(np.float64).ravel()
        scale = np.ones(1) if scale is None else scale
        offset = np.zeros(1) if offset is None else offset
        if node.op_type == "Sub" and node.input[0] == tensor:
            offset = offset - value
        elif node.op_type == "Add":
            offset = offset + value
        elif node.op_type == "Mul":
            scale, offset = scale * value, offset * value
        elif node.op_type == "Div" and node.input[0] == tensor:
            scale, offset = scale / value, offset / value
        else:
            return None
        tensor = node.output[0]
    following = consumers.get(node.output[0], [])
    if len(following) != 1 or following[0].op_type != "Add":
        return None
    add = following[0]
    bias = _constant_operand(add, node.output[0], constants)
    if bias is None:
        return None
    weights = weights.astype(np.float64)
    n_features, n_scores = weights.shape
    scale = np.broadcast_to(np.ones(1) if scale is None else scale, (n_features,))
    offset = np.broadcast_to(np.zeros(1) if offset is None else offset, (n_features,))
    # (scale * x + offset) @ W + b  ==  x @ (scale[:, None] * W) + (offset @ W + b)
    folded = (scale[:, None] * weights).T
    intercepts = np.broadcast_to(offset @ weights + bias.astype(np.float64).ravel(), (n_scores,))
    links = {following.op_type for following in consumers.get(add.output[0], [])}
    if "Softmax" in links and n_scores > 1:
        link = "softmax"
    elif "Sigmoid" in links and n_scores == 1:
        link = "logistic"
    elif "Sigmoid" in links and n_scores == 2 and np.array_equal(folded[0], -folded[1]):
        # skl2onnx scores a binary classifier as [-z, z]: the logistic link on z.
        if intercepts[0] != -intercepts[1]:
            return None
        folded, intercepts, link = folded[1:], intercepts[1:], "logistic"
    elif len(graph.output) == 1 and n_scores == 1:
        link = "identity"
    else:
        return None
    if folded.size > LinearRowKernel.MAX_WEIGHTS:
        return None
    return LinearRowKernel(folded.tolist(), intercepts.tolist(), link)


def _constant_operand(node, tensor: str, constants: dict) -> np.ndarray | None:
    """The initializer `node` combines `tensor` with, if it has exactly one."""
    others = [name for name in node.input if name != tensor]
    if len(node.input) != 2 or len(others) != 1 or others[0] not in constants:
        return None
    return constants[others[0]]
