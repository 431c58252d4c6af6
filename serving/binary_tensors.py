"""The binary tensor data extension of the Open Inference Protocol, as KServe and Triton define it.

A request whose `Inference-Header-Content-Length: n` header is present holds n bytes of JSON (the
usual infer request), then the binary data of every input whose `parameters.binary_data_size` is
given, in input order. Tensor data is little-endian, row-major, without padding: each element in
its datatype's native size, BOOL as one byte (0 or 1), and BYTES as a 4-byte little-endian length
followed by that many bytes. Answers work the same way: outputs asked for in binary (by their own
`parameters.binary_data`, or the request's `parameters.binary_data_output`) leave `data` out of
the JSON and carry `parameters.binary_data_size`, and their bytes follow the JSON, in output order.

Every framing mistake is a 400 that names the input.
"""

from __future__ import annotations

import struct

import numpy as np

from serving.protocol import Response, with_header
from serving.validation import RequestError

HEADER = b"inference-header-content-length"
OCTET_STREAM = b"application/octet-stream"
DTYPES = {
    "BOOL": np.dtype(np.uint8),  # one byte each; checked to be 0 or 1, then read as bool
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
DATATYPES = (*DTYPES, "BYTES")
STRUCT_CODES = dict(zip(DTYPES, "?BHIQbhiqefd", strict=True))
LENGTH = struct.Struct("<I")


def header_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The Inference-Header-Content-Length, or None when the request has none."""
    for name, value in headers:
        if name == HEADER:
            if not value.isdigit():
                raise RequestError(
                    400, "Inference-Header-Content-Length must be the length of the JSON part, in bytes."
                )
            return int(value)
    return None


def split(body: bytes, length: int) -> tuple[bytes, memoryview]:
    """The JSON part and the binary tail of a body."""
    if not 0 < length <= len(body):
        raise RequestError(
            400,
            f"Inference-Header-Content-Length is {length}, but the JSON part must be at least one byte "
            f"and at most the body's {len(body)}.",
        )
    return body[:length], memoryview(body)[length:]


def _input_error(index: int, tensor: dict, problem: str, field: str) -> RequestError:
    name = tensor.get("name")
    label = f"Input {name!r}" if type(name) is str else f"Input {index}"
    return RequestError(400, f"{label} (inputs/{index}): {problem}", {f"inputs/{index}/{field}": problem})


def binary_size(tensor, index: int) -> int | None:
    """The input's `parameters.binary_data_size`, or None when its data is in the JSON."""
    if type(tensor) is not dict:
        return None
    parameters = tensor.get("parameters")
    if parameters is None:
        return None
    if type(parameters) is not dict:
        raise _input_error(index, {}, "parameters must be an object", "parameters")
    size = parameters.get("binary_data_size")
    if size is None:
        return None
    if type(size) is not int or size < 0:
        raise _input_error(
            index, tensor, "binary_data_size must be a non-negative integer", "parameters/binary_data_size"
        )
    return size


def read_inputs(inputs: list, tail: memoryview | None) -> dict[int, np.ndarray | list[bytes]]:
    """The binary inputs' values, flat, by input index; the tail must hold exactly their bytes."""
    values: dict[int, np.ndarray | list[bytes]] = {}
    offset = 0
    for index, tensor in enumerate(inputs):
        size = binary_size(tensor, index)
        if size is None:
            continue
        if tail is None:
            raise _input_error(
                index,
                tensor,
                "binary_data_size needs the Inference-Header-Content-Length header, "
                "giving the length of the JSON part",
                "parameters/binary_data_size",
            )
        if "data" in tensor:
            raise _input_error(index, tensor, "give data in JSON or as binary, not both", "data")
        if offset + size > len(tail):
            raise _input_error(
                index,
                tensor,
                f"binary_data_size is {size} bytes, but only {len(tail) - offset} are left "
                "after the JSON part",
                "parameters/binary_data_size",
            )
        values[index] = decode(tensor, index, tail[offset : offset + size])
        offset += size
    if tail is not None and offset != len(tail):
        raise RequestError(
            400,
            f"The body has {len(tail)} bytes after the JSON part, but the inputs' binary_data_size "
            f"add up to {offset}.",
        )
    return values


def _count(tensor: dict, index: int) -> int:
    shape = tensor.get("shape")
    if type(shape) is not list or not all(type(size) is int and size >= 0 for size in shape):
        raise _input_error(index, tensor, "binary data needs a shape of non-negative integers", "shape")
    count = 1
    for size in shape:
        count *= size
    return count


def decode(tensor: dict, index: int, data: memoryview) -> np.ndarray | list[bytes]:
    """One input's binary data as a flat array (BYTES: a list of bytes), checked against its shape."""
    datatype = tensor.get("datatype")
    count = _count(tensor, index)
    if datatype == "BYTES":
        return decode_bytes(data, count, tensor, index)
    dtype = DTYPES.get(datatype) if type(datatype) is str else None
    if dtype is None:
        raise _input_error(index, tensor, f"datatype must be one of {', '.join(DATATYPES)}", "datatype")
    if len(data) != count * dtype.itemsize:
        raise _input_error(
            index,
            tensor,
            f"binary_data_size is {len(data)} bytes, but shape {tensor['shape']} of {datatype} "
            f"takes {count * dtype.itemsize}",
            "parameters/binary_data_size",
        )
    array = np.frombuffer(data, dtype)
    if datatype == "BOOL":
        if array.size and array.max() > 1:
            raise _input_error(index, tensor, "BOOL elements must be the bytes 0 or 1", "data")
        return array.view(np.bool_)
    return array


def decode_bytes(data: memoryview, count: int, tensor: dict, index: int) -> list[bytes]:
    """BYTES elements: each a 4-byte little-endian length, then that many bytes."""
    values = []
    offset, end = 0, len(data)
    for element in range(count):
        if offset + 4 > end:
            raise _input_error(
                index,
                tensor,
                f"BYTES data ends before element {element} of {count}",
                "parameters/binary_data_size",
            )
        (length,) = LENGTH.unpack_from(data, offset)
        offset += 4
        if offset + length > end:
            raise _input_error(
                index,
                tensor,
                f"BYTES element {element} is {length} bytes long, but only {end - offset} are left",
                "parameters/binary_data_size",
            )
        values.append(bytes(data[offset : offset + length]))
        offset += length
    if offset != end:
        raise _input_error(
            index,
            tensor,
            f"binary_data_size is {end} bytes, but the {count} BYTES elements of shape "
            f"{tensor['shape']} take {offset}",
            "parameters/binary_data_size",
        )
    return values


def _element(value: str | bytes) -> bytes:
    raw = value.encode() if type(value) is str else value
    return LENGTH.pack(len(raw)) + raw


def encode_bytes(values: list) -> bytes:
    """BYTES elements (str as UTF-8, or bytes), each after its 4-byte little-endian length."""
    encoded = {value: _element(value) for value in set(values)}  # labels repeat: each once
    return b"".join([encoded[value] for value in values])


def encode(values: list, datatype: str) -> bytes:
    """An output tensor's values, flat, as the extension's little-endian bytes."""
    if datatype == "BYTES":
        return encode_bytes(values)
    return struct.pack(f"<{len(values)}{STRUCT_CODES[datatype]}", *values)


def binary_response(header: bytes, tensors: list[bytes]) -> Response:
    """The JSON part followed by the outputs' bytes, with the header giving the JSON part's length."""
    return with_header((200, b"".join((header, *tensors)), OCTET_STREAM), HEADER, b"%d" % len(header))
