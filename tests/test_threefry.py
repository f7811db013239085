"""vae_jax.math.threefry gives jax.random's numbers exactly, jitted or not."""

from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax.math import threefry

_SHAPES = ((1,), (7,), (128, 784), (3, 5, 20))
_SEEDS = (0, 1, 12345, 2**31 - 1)


def test_random123_vectors():
  """Threefry-2x32, 20 rounds: the known answers of Random123 (kat_vectors)."""
  u = np.uint32
  cases = [
    ((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF,) * 2, (0xFFFFFFFF,) * 2, (0x1CB996FC, 0xBB002BE7)),
    (
      (0x13198A2E, 0x03707344),
      (0x243F6A88, 0x85A308D3),
      (0xC4923A9C, 0x483DF7A0),
    ),
  ]
  for key, count, expected in cases:
    out = threefry.threefry2x32(
      (u(key[0]), u(key[1])), (jnp.uint32(count[0]), jnp.uint32(count[1]))
    )
    assert [int(o) for o in out] == list(expected)


@pytest.mark.slow
class SameAsJaxRandomTest(chex.TestCase, parameterized.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(seed=_SEEDS, shape=_SHAPES)
  def test_draws(self, seed, shape):
    key = jax.random.key(seed)
    for mine, theirs in (
      (threefry.bits, jax.random.bits),
      (threefry.uniform, jax.random.uniform),
      (threefry.normal, jax.random.normal),
    ):
      got = self.variant(mine, static_argnums=1)(key, shape)
      np.testing.assert_array_equal(got, theirs(key, shape))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0, 1, 7, 2**31 - 1)
  def test_fold_in(self, data):
    key = jax.random.key(3)
    got = self.variant(threefry.fold_in)(key, data)
    np.testing.assert_array_equal(
      jax.random.key_data(got),
      jax.random.key_data(jax.random.fold_in(key, data)),
    )


def test_fold_in_of_an_array_is_a_fold_in_per_element():
  key = jax.random.key(4)
  got = threefry.fold_in(key, jnp.arange(5))
  want = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(5))
  np.testing.assert_array_equal(
    jax.random.key_data(got), jax.random.key_data(want)
  )


def test_vmapped_per_example_keys():
  """The objectives' use: a key per example, a fold-in per sample."""
  keys = jax.random.split(jax.random.key(5), 6)
  draw = lambda f, g: jax.jit(jax.vmap(lambda k: f(g(k, 4), (20,))))(keys)
  np.testing.assert_array_equal(
    draw(threefry.normal, threefry.fold_in),
    draw(jax.random.normal, jax.random.fold_in),
  )


def test_raw_key_data():
  key = jax.random.key(6)
  np.testing.assert_array_equal(
    threefry.bits(jax.random.key_data(key), (9,)), jax.random.bits(key, (9,))
  )
