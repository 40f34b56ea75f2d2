"""TensorProto and numpy, both ways, without TensorFlow's runtime: the wire form of TF Serving's tensors.

Decoding follows `tf.make_ndarray`: raw `tensor_content`, or the typed repeated field where one
value fills the whole tensor and fewer values are padded with the last one. Encoding gives either
raw bytes (what clients send: compact and fastest to read) or the typed field (what TF Serving's
Predict answers with, `Tensor::AsProtoField`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tensorflow.core.framework import tensor_pb2, types_pb2

# Little-endian, as tensor_content is on every platform TF Serving runs on.
NUMPY_DTYPES: dict[int, np.dtype[Any]] = {
    types_pb2.DT_FLOAT: np.dtype("<f4"),
    types_pb2.DT_DOUBLE: np.dtype("<f8"),
    types_pb2.DT_HALF: np.dtype("<f2"),
    types_pb2.DT_UINT8: np.dtype("u1"),
    types_pb2.DT_INT8: np.dtype("i1"),
    types_pb2.DT_UINT16: np.dtype("<u2"),
    types_pb2.DT_INT16: np.dtype("<i2"),
    types_pb2.DT_INT32: np.dtype("<i4"),
    types_pb2.DT_INT64: np.dtype("<i8"),
    types_pb2.DT_BOOL: np.dtype("?"),
}
_ENUMS = {dtype.newbyteorder("="): enum for enum, dtype in NUMPY_DTYPES.items()}


def dtype_name(enum: int) -> str:
    """`uint8`, `float32`...: the name TensorFlow gives a DataType, for messages."""
    if enum in NUMPY_DTYPES:
        return str(NUMPY_DTYPES[enum].name)
    if enum in types_pb2.DataType.values():
        return types_pb2.DataType.Name(enum).removeprefix("DT_").lower()
    return str(enum)


def dtype_enum(dtype: np.dtype[Any]) -> int:
    """The DataType of a numpy dtype; ValueError for one TF Serving's tensors cannot carry here."""
    enum = _ENUMS.get(np.dtype(dtype).newbyteorder("="))
    if enum is None:
        raise ValueError(f"no TensorProto dtype for numpy {np.dtype(dtype).name}")
    return enum


def _typed_values(proto: tensor_pb2.TensorProto) -> Any:
    if proto.dtype == types_pb2.DT_FLOAT:
        return proto.float_val
    if proto.dtype == types_pb2.DT_DOUBLE:
        return proto.double_val
    if proto.dtype == types_pb2.DT_INT64:
        return proto.int64_val
    if proto.dtype == types_pb2.DT_BOOL:
        return proto.bool_val
    if proto.dtype == types_pb2.DT_HALF:
        return np.asarray(proto.half_val, np.uint16).view(np.float16)
    return proto.int_val


def to_array(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """A numeric TensorProto as numpy; ValueError if its dtype is not numeric or its values do not fit its shape."""
    dtype = NUMPY_DTYPES.get(proto.dtype)
    if dtype is None:
        raise ValueError(f"unsupported tensor dtype {dtype_name(proto.dtype)}")
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    if any(size < 0 for size in shape):
        raise ValueError(f"tensor shape {list(shape)} has a negative size")
    count = int(np.prod(shape, dtype=np.int64))
    native = dtype.newbyteorder("=")
    if proto.tensor_content:
        if len(proto.tensor_content) != count * dtype.itemsize:
            raise ValueError(
                f"{len(proto.tensor_content)} bytes of content for shape {list(shape)} of {dtype.name} "
                f"({count * dtype.itemsize} expected)"
            )
        return np.frombuffer(proto.tensor_content, dtype=dtype).astype(native).reshape(shape)
    values = np.asarray(_typed_values(proto)).astype(native, copy=False)
    if len(values) == count:
        return values.reshape(shape)
    if len(values) > count or (not len(values) and count):
        raise ValueError(f"{len(values)} values for shape {list(shape)} ({count} expected)")
    return np.pad(values, (0, count - len(values)), mode="edge").reshape(shape)


def _shaped(array: np.ndarray) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype_enum(array.dtype))
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def content_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """`array` as raw little-endian bytes in tensor_content."""
    proto = _shaped(array)
    proto.tensor_content = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return proto


def typed_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """`array` with its values in the typed repeated field, as TF Serving's Predict answers."""
    proto = _shaped(array)
    flat = array.ravel()
    if array.dtype == np.float32:
        proto.float_val.extend(flat.tolist())
    elif array.dtype == np.float64:
        proto.double_val.extend(flat.tolist())
    elif array.dtype == np.int64:
        proto.int64_val.extend(flat.tolist())
    elif array.dtype == np.bool_:
        proto.bool_val.extend(flat.tolist())
    elif array.dtype == np.float16:
        proto.half_val.extend(flat.view(np.uint16).tolist())
    else:  # the small integer types all travel in int_val
        proto.int_val.extend(flat.tolist())
    return proto
