"""Reading MNIST-format IDX files (plain or gzip-compressed).

IDX layout: a 4-byte magic number 0x00 0x00 <dtype code> <ndim>, then ndim
big-endian uint32 sizes, then the data in C order. MNIST and Fashion-MNIST
store uint8 images `[N, 28, 28]` (magic 0x00000803) and uint8 labels `[N]`
(magic 0x00000801). Every defect of a file becomes a `DataError` that names
the file and says what to do.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

from vae_jax.errors import DataError

__all__ = ["read_idx", "write_idx"]

_DTYPES: dict[int, np.dtype] = {
  0x08: np.dtype(np.uint8),
  0x09: np.dtype(np.int8),
  0x0B: np.dtype(">i2"),
  0x0C: np.dtype(">i4"),
  0x0D: np.dtype(">f4"),
  0x0E: np.dtype(">f8"),
}
_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _DTYPES.items()}


def read_idx(path: str) -> np.ndarray:
  """Returns the array stored in the IDX file at `path` (`.gz` or plain).

  Raises:
    DataError: the file is missing, truncated, corrupt, or not IDX.
  """
  if not os.path.isfile(path):
    raise DataError(f"data file not found: {path}")
  try:
    if path.endswith(".gz"):
      with gzip.open(path, "rb") as f:
        raw = f.read()
    else:
      with open(path, "rb") as f:
        raw = f.read()
  except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
    raise DataError(
      f"{path} is truncated or corrupt ({type(e).__name__}: {e}); "
      "delete it and get a fresh copy (see the README, 'Data')"
    ) from None
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
    raise DataError(
      f"{path} is not an IDX file (magic number {raw[:4].hex() or 'missing'}, "
      "expected 0000<type><ndim>, e.g. 00000803 for images); point "
      "--config.data_dir at a directory of MNIST-format IDX files"
    )
  dtype, ndim = _DTYPES[raw[2]], raw[3]
  header = 4 + 4 * ndim
  if ndim == 0 or len(raw) < header:
    raise DataError(f"{path}: IDX header is truncated; get a fresh copy")
  shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4))
  # Python's integers: np.prod of sizes near 2^32 wraps around (to 0 for
  # 2^31 · 2^31 · 4), and a header of huge sizes would pass as empty.
  expected = header + math.prod(shape) * dtype.itemsize
  if len(raw) != expected:
    raise DataError(
      f"{path}: IDX header promises shape {shape} ({expected} bytes) but the "
      f"file holds {len(raw)} bytes; it is truncated or corrupt, get a fresh copy"
    )
  data = np.frombuffer(raw, dtype, offset=header).reshape(shape)
  return data.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str, array: np.ndarray) -> None:
  """Writes `array` as an IDX file (gzip-compressed if `path` ends in .gz)."""
  array = np.asarray(array)
  code = _CODES.get(array.dtype.newbyteorder("="))
  if code is None:
    raise ValueError(f"IDX cannot store dtype {array.dtype}")
  header = (
    bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
  )
  payload = header + array.astype(_DTYPES[code], copy=False).tobytes()
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(payload)
