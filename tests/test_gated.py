"""activation=glu: the gated dense layers of the VampPrior reference code."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax.nets import modules
from vae_jax.nets.mlp import MLPVAE

import tolerances


class _Hidden(nn.Module):
  width: int
  activation: str

  @nn.compact
  def __call__(self, h):
    return modules.hidden_layer(h, self.width, self.activation, "hidden")


class GatedTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_glu_is_value_times_sigmoid_gate(self):
    h = jax.random.normal(jax.random.key(0), (16, 30))
    layer = _Hidden(7, "glu")
    params = layer.init(jax.random.key(1), h)
    kernel = params["params"]["hidden"]["kernel"]
    self.assertEqual(kernel.shape, (30, 14))  # value and gate, one matmul
    params = jax.tree_util.tree_map(lambda p: p + 0.1, params)  # bias ≠ 0
    kernel = np.asarray(params["params"]["hidden"]["kernel"], np.float64)
    bias = np.asarray(params["params"]["hidden"]["bias"], np.float64)
    h64 = np.asarray(h, np.float64)
    value = h64 @ kernel[:, :7] + bias[:7]
    gate = h64 @ kernel[:, 7:] + bias[7:]
    want = value / (1.0 + np.exp(-gate))
    got = self.variant(layer.apply)(params, h)
    chex.assert_shape(got, (16, 7))
    # Each pre-activation is a 30-term dot product plus a bias. The value's
    # error passes through σ ≤ 1; the gate's error δ moves σ by ≤ δ/4, which
    # the value scales; σ itself (2 ops) and the product (1) add 3 more.
    magnitude = np.abs(h64) @ np.abs(kernel) + np.abs(bias)
    value_err = tolerances.sum_atol(31, magnitude[:, :7], ops_per_term=3)
    gate_err = tolerances.sum_atol(31, magnitude[:, 7:]) / 4
    atol = value_err + np.abs(value) * gate_err
    tolerances.assert_close(got, want, atol)


@pytest.mark.slow
def test_elementwise_activation_unchanged():
  h = jax.random.normal(jax.random.key(0), (4, 5))
  layer = _Hidden(3, "relu")
  params = layer.init(jax.random.key(1), h)
  reference = nn.Dense(3)
  want = jax.nn.relu(reference.apply({"params": params["params"]["hidden"]}, h))
  np.testing.assert_array_equal(layer.apply(params, h), want)


@pytest.mark.slow
def test_gated_mlp_vae_trains():
  model = MLPVAE(
    event_shape=(12,), latent_dim=3, hidden_dims=(8, 6), activation="glu"
  )
  params = model.init(jax.random.key(0))
  assert params["encoder"]["hidden_1"]["kernel"].shape == (8, 12)
  assert params["decoder"]["hidden_0"]["kernel"].shape == (3, 12)
  x = (jax.random.uniform(jax.random.key(1), (32, 12)) > 0.5).astype(
    jnp.float32
  )

  def loss(p, key):
    mean, logvar = model.encode(p, x)
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
    return -jnp.mean(model.log_likelihood(model.decode(p, z), x))

  grads = jax.grad(loss)(params, jax.random.key(2))
  # Every gate and value column gets a gradient: both halves are used.
  for layer in ("hidden_0", "hidden_1"):
    for net in ("encoder", "decoder"):
      g = np.abs(np.asarray(grads[net][layer]["kernel"]))
      width = g.shape[1] // 2
      assert g[:, :width].sum() > 0.0
      assert g[:, width:].sum() > 0.0


def test_conv_model_refuses_glu():
  from vae_jax.nets.conv import ConvVAE  # pylint: disable=g-import-not-at-top

  with pytest.raises(ValueError, match="glu is for the MLP"):
    ConvVAE(activation="glu")
