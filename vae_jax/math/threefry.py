"""jax.random's threefry draws, bit for bit, as plain fusible arithmetic.

    fold_in(key, data) == jax.random.fold_in(key, data)
    bits(key, shape)   == jax.random.bits(key, shape)            (uint32)
    uniform(key, shape) == jax.random.uniform(key, shape)        (float32)
    normal(key, shape)  == jax.random.normal(key, shape)         (float32)

for the default key type (threefry2x32, `jax_threefry_partitionable`, the
default since jax 0.5). Why hand-written: on CPU, JAX lowers every threefry
call to an XLA while loop of 5 iterations (rolled, to keep compile times
down), and XLA runs each iteration's ops as separate kernels. A train step
makes several small draws (its key, the batch's binarisation, the z noise),
each one such loop. Here the 20 rounds are plain arithmetic, which XLA
fuses into one loop over the output together with the code around it
(benchmarks/results/threefry.json). The functions accept keys with leading
batch axes (vmap them, or pass the key data), so a key per example costs no
loop either.

The numbers are the same as jax.random's (tests/test_threefry.py checks it
for keys, shapes, fold-ins and vmapped use), so runs, checkpoints and the
evaluation's fixed binarisation do not change. Threefry-2x32 with 20
rounds is Salmon et al. (2011), "Parallel random numbers: as easy as 1, 2,
3"; the known-answer vectors of their Random123 library are in the tests.
"""

from __future__ import annotations

from typing import Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
  "threefry2x32",
  "fold_in",
  "bits",
  "uniform",
  "normal",
  "normal_from_bits",
]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x: chex.Array, d: int) -> chex.Array:
  return (x << np.uint32(d)) | (x >> np.uint32(32 - d))


def threefry2x32(
  key: tuple[chex.Array, chex.Array], count: tuple[chex.Array, chex.Array]
) -> tuple[chex.Array, chex.Array]:
  """The Threefry-2x32 block function, 20 rounds, elementwise (uint32).

  All four inputs broadcast against each other.
  """
  k0, k1 = key
  ks = (k0, k1, k0 ^ k1 ^ _PARITY)
  x0, x1 = count[0] + ks[0], count[1] + ks[1]
  for i in range(5):
    for r in _ROTATIONS[i % 2]:
      x0 = x0 + x1
      x1 = x0 ^ _rotate_left(x1, r)
    x0 = x0 + ks[(i + 1) % 3]
    x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
  return x0, x1


def _words(key: chex.Array) -> tuple[chex.Array, chex.Array]:
  """(k0, k1) of a typed threefry key, or of raw key data `[..., 2]`."""
  data = (
    jax.random.key_data(key)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    else key
  )
  chex.assert_type(data, jnp.uint32)
  return data[..., 0], data[..., 1]


def fold_in(key: chex.Array, data: chex.Numeric) -> chex.Array:
  """jax.random.fold_in for threefry keys; `data` an integer (or array)."""
  k0, k1 = _words(key)
  d = jnp.asarray(data).astype(jnp.uint32)
  out = threefry2x32((k0, k1), (jnp.zeros_like(d), d))
  data_out = jnp.stack(jnp.broadcast_arrays(*out), axis=-1)
  return (
    jax.random.wrap_key_data(data_out)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    else data_out
  )


def bits(key: chex.Array, shape: Sequence[int]) -> chex.Array:
  """jax.random.bits(key, shape): uint32, `key.shape + shape`.

  Element i (flat, row-major) is the XOR of the two words of
  threefry2x32(key, (0, i)), as partitionable threefry defines it.
  """
  shape = tuple(shape)
  if int(np.prod(shape)) >= 2**32:
    raise ValueError(f"shape {shape} has 2**32 or more elements")
  k0, k1 = _words(key)
  k0 = k0.reshape(k0.shape + (1,) * len(shape))
  k1 = k1.reshape(k1.shape + (1,) * len(shape))
  index = jnp.arange(int(np.prod(shape)), dtype=jnp.uint32).reshape(shape)
  x0, x1 = threefry2x32((k0, k1), (jnp.zeros_like(index), index))
  return x0 ^ x1


def _unit_floats(key: chex.Array, shape: Sequence[int]) -> chex.Array:
  return _unit_floats_from_bits(bits(key, shape))


def _unit_floats_from_bits(random_bits: chex.Array) -> chex.Array:
  """Floats in [0, 1): 23 random mantissa bits under exponent 0, minus 1."""
  mantissa = random_bits >> np.uint32(32 - 23)
  one = np.array(1.0, np.float32).view(np.uint32)
  return jax.lax.bitcast_convert_type(mantissa | one, jnp.float32) - 1.0


def uniform(key: chex.Array, shape: Sequence[int]) -> chex.Array:
  """jax.random.uniform(key, shape): float32 in [0, 1)."""
  return jnp.maximum(0.0, _unit_floats(key, shape))


def normal(key: chex.Array, shape: Sequence[int]) -> chex.Array:
  """jax.random.normal(key, shape): float32, √2 erf⁻¹(u), u ~ U(−1, 1)."""
  return normal_from_bits(bits(key, shape))


def normal_from_bits(random_bits: chex.Array) -> chex.Array:
  """The normals of `normal` from its `bits`: normal(k, s) == this(bits(k, s)).

  Split off so a caller can make XLA compute the 20 threefry rounds once:
  a fusion recomputes its cheap-looking elementwise inputs, and erf⁻¹ is
  several fusions, so normals used by several ops are hashed up to five
  times unless their bits are a buffer of their own (a loop's carry, say).
  """
  lo = np.nextafter(np.float32(-1.0), np.float32(0.0), dtype=np.float32)
  scale = np.float32(1.0) - lo
  u = jnp.maximum(lo, _unit_floats_from_bits(random_bits) * scale + lo)
  return np.float32(np.sqrt(2)) * jax.lax.erf_inv(u)
