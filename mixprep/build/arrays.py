"""numpy arrays as Arrow arrays, built from their buffers.

`pa.array(numpy_array)` asks pyarrow's pandas shim whether the array is categorical, which
imports pandas (~0.4 s, once per process, in every worker: 16% of a toy build) when it is
installed; so does `pa.array` of a Python list. Building the Arrow array from buffers skips
that and copies nothing but a boolean mask's bits.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa


def mask(keep: np.ndarray) -> pa.BooleanArray:
    """A boolean numpy array as an Arrow BooleanArray (for `filter`)."""
    bits = np.packbits(np.asarray(keep, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(keep), [None, pa.py_buffer(bits)])


def integers(values: np.ndarray, dtype: np.dtype | type = np.int64) -> pa.Array:
    """An integer numpy array as an Arrow array of `dtype` (for `take`, dictionary indices)."""
    data = np.ascontiguousarray(values, dtype=dtype)
    return pa.Array.from_buffers(pa.from_numpy_dtype(data.dtype), len(data), [None, pa.py_buffer(data)])


def strings(texts: list[str] | tuple[str, ...]) -> pa.StringArray:
    """Python strings as an Arrow StringArray (small lists: source names)."""
    encoded = [t.encode() for t in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])
