"""TensorProto <-> numpy without TensorFlow's runtime, checked against TensorFlow's own codec."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from emostream_serving.tensors import content_proto, dtype_enum, dtype_name, to_array, typed_proto
from tensorflow.core.framework import tensor_pb2, types_pb2

DTYPES = [np.float32, np.float64, np.float16, np.uint8, np.int8, np.uint16, np.int16, np.int32, np.int64, np.bool_]


@pytest.mark.parametrize("dtype", DTYPES)
def test_both_encodings_decode_as_tensorflow_decodes_them(dtype: type) -> None:
    array = (np.arange(24).reshape(2, 3, 4) % 7).astype(dtype)
    for proto in (content_proto(array), typed_proto(array)):
        assert proto.dtype == tf.as_dtype(dtype).as_datatype_enum
        np.testing.assert_array_equal(to_array(proto), tf.make_ndarray(proto))
        np.testing.assert_array_equal(to_array(proto), array)
        assert to_array(proto).dtype == array.dtype


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.int64])
def test_tensorflows_own_encoding_decodes_the_same(dtype: type) -> None:
    array = (np.arange(12).reshape(3, 4) * 3).astype(dtype)
    proto = tf.make_tensor_proto(array)
    np.testing.assert_array_equal(to_array(proto), array)


def test_one_value_fills_the_tensor_and_fewer_are_padded_with_the_last_as_tensorflow_does() -> None:
    one = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, int_val=[5])
    one.tensor_shape.dim.add(size=2)
    one.tensor_shape.dim.add(size=2)
    np.testing.assert_array_equal(to_array(one), tf.make_ndarray(one))
    np.testing.assert_array_equal(to_array(one), np.full((2, 2), 5, np.int32))
    fewer = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0, 2.0])
    fewer.tensor_shape.dim.add(size=4)
    np.testing.assert_array_equal(to_array(fewer), tf.make_ndarray(fewer))


def test_values_that_do_not_fit_the_shape_are_refused_with_the_counts() -> None:
    many = tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8, int_val=[1, 2, 3])
    many.tensor_shape.dim.add(size=2)
    with pytest.raises(ValueError, match="3 values for shape \\[2\\]"):
        to_array(many)
    none = tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8)
    none.tensor_shape.dim.add(size=2)
    with pytest.raises(ValueError, match="0 values"):
        to_array(none)
    short = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=b"\0" * 7)
    short.tensor_shape.dim.add(size=2)
    with pytest.raises(ValueError, match="7 bytes of content for shape \\[2\\] of float32 \\(8 expected\\)"):
        to_array(short)


def test_an_empty_tensor_decodes_empty() -> None:
    proto = content_proto(np.zeros((0, 48, 48, 1), np.uint8))
    assert to_array(proto).shape == (0, 48, 48, 1)


def test_non_numeric_dtypes_are_named_not_decoded() -> None:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"x"])
    with pytest.raises(ValueError, match="unsupported tensor dtype string"):
        to_array(proto)
    assert dtype_name(types_pb2.DT_UINT8) == "uint8"
    assert dtype_name(types_pb2.DT_STRING) == "string"
    assert dtype_enum(np.dtype(">f4")) == types_pb2.DT_FLOAT
    with pytest.raises(ValueError, match="complex128"):
        dtype_enum(np.dtype(np.complex128))
