"""The baselines of benchmarks/train_step.py: an MLP VAE in bare jnp.

What a careful user writes without a library: parameters as a list of
(W, b), one matmul for both encoder heads, the per-example ELBO (analytic KL,
Bernoulli decoder) vmapped over the batch with one noise draw per batch,
`optax.adam`, and an epoch as one jitted `lax.scan` over batches binarised
on the host beforehand (`plain_epoch`). `naive_step` is the same step jitted
alone, for a Python loop over host NumPy batches (how most examples train).
`matmul_step` is a step of nothing but the training matmuls, with their
true dependencies: the machine's limit for this model; `matmul_adam_step`
adds `optax.adam`'s update of every parameter: the least any Adam trainer
of this model that XLA compiles must do.

The model and its initialisation are those of `vae_jax` (784-H…-L, ReLU,
biases zero, LeCun-normal weights), so the programs do the same work.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
  "Sizes",
  "init",
  "plain_epoch",
  "naive_step",
  "matmul_step",
  "matmul_adam_step",
  "init_adam_carry",
  "matmul_flops",
  "binarize_epoch",
]


class Sizes(NamedTuple):
  hidden: tuple[int, ...]
  latent: int
  batch: int
  data: int = 784

  @property
  def layers(self) -> list[tuple[int, int]]:
    """(in, out) of each matmul: encoder, both heads as one, decoder."""
    enc = [self.data, *self.hidden]
    dec = [self.latent, *reversed(self.hidden), self.data]
    return [*zip(enc[:-1], enc[1:]), (enc[-1], 2 * self.latent)] + list(
      zip(dec[:-1], dec[1:])
    )


def init(sizes: Sizes, key) -> list:
  keys = jax.random.split(key, len(sizes.layers))
  return [
    (jax.random.normal(k, (a, b)) / np.sqrt(a), jnp.zeros(b))
    for k, (a, b) in zip(keys, sizes.layers)
  ]


def _mlp(layers, h):
  for w, b in layers[:-1]:
    h = jax.nn.relu(h @ w + b)
  w, b = layers[-1]
  return h @ w + b


def _elbo(sizes: Sizes, params, x, eps):
  """One example's ELBO, x `[784]` binary, eps `[L]`."""
  n_enc = len(sizes.hidden) + 1
  mean, logvar = jnp.split(_mlp(params[:n_enc], x), 2)
  z = mean + jnp.exp(0.5 * logvar) * eps
  logits = _mlp(params[n_enc:], z)
  log_lik = jnp.sum(x * logits - jax.nn.softplus(logits))
  kl = 0.5 * jnp.sum(mean**2 + jnp.exp(logvar) - 1.0 - logvar)
  return log_lik - kl


def _step(sizes: Sizes, optimizer, carry, batch):
  params, opt_state, key, t = carry
  eps = jax.random.normal(
    jax.random.fold_in(key, t), (sizes.batch, sizes.latent)
  )
  loss = lambda p: (
    -jnp.mean(jax.vmap(functools.partial(_elbo, sizes, p))(batch, eps))
  )
  value, grads = jax.value_and_grad(loss)(params)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  return (optax.apply_updates(params, updates), opt_state, key, t + 1), value


def init_carry(sizes: Sizes, learning_rate: float = 1e-3):
  params = init(sizes, jax.random.key(0))
  opt_state = optax.adam(learning_rate).init(params)
  return params, opt_state, jax.random.key(1), jnp.int32(0)


def plain_epoch(sizes: Sizes, learning_rate: float = 1e-3):
  """jit(carry, batches `[S, B, 784]` float32) → (carry, mean ELBO)."""
  step = functools.partial(_step, sizes, optax.adam(learning_rate))

  @functools.partial(jax.jit, donate_argnums=0)
  def run(carry, batches):
    carry, losses = jax.lax.scan(step, carry, batches)
    return carry, -jnp.mean(losses)

  return run


def naive_step(sizes: Sizes, learning_rate: float = 1e-3):
  """jit(carry, batch `[B, 784]`) → (carry, ELBO): one step per call."""
  return jax.jit(
    functools.partial(_step, sizes, optax.adam(learning_rate)), donate_argnums=0
  )


def matmul_flops(sizes: Sizes) -> int:
  """FLOPs of a training step's matmuls per example: forward (2 MACs),
  weight gradients (2 MACs) and input gradients (2 MACs) of every layer but
  the first, whose input is data (the common "6 × MACs" counts it too)."""
  macs = [a * b for a, b in sizes.layers]
  return 6 * sum(macs) - 2 * macs[0]


def _matmul_grads(sizes: Sizes, params, x) -> list:
  """The weight "gradients" of a step of only matmuls, chained as in a real
  step (the encoder's output feeds the decoder; each gradient feeds the
  next), in the order of `params`."""
  n_enc = len(sizes.hidden) + 1
  acts = [x]
  for i, (w, _) in enumerate(params):
    h = acts[-1] @ w
    if i == n_enc - 1:
      h = h[:, : sizes.latent]  # z ← μ (a slice, no arithmetic)
    acts.append(h)
  grad = acts[-1]
  grads = []
  for i in reversed(range(len(params))):
    w = params[i][0]
    if i == n_enc - 1:
      grad = jnp.concatenate([grad, grad], axis=1)
    grads.append(acts[i].T @ grad)
    if i > 0:
      grad = grad @ w.T
  return grads[::-1]


def matmul_step(sizes: Sizes, dtype=jnp.float32):
  """jit(params, x `[S, B, 784]`) → params: per step, only the matmuls of
  forward and backward passes; a tiny update makes every step depend on
  the last. With `dtype` bfloat16, the matmuls take float32 parameters cast
  to it (what mixed precision does), the update stays float32."""

  def body(params, x):
    cast = [(w.astype(dtype), b) for w, b in params]
    grads = _matmul_grads(sizes, cast, x.astype(dtype))
    return [
      (w - 1e-9 * g.astype(w.dtype), b) for (w, b), g in zip(params, grads)
    ], None

  @jax.jit
  def run(params, batches):
    return jax.lax.scan(body, params, batches)[0]

  return run


def init_adam_carry(sizes: Sizes, learning_rate: float = 1e-3):
  params = init(sizes, jax.random.key(0))
  return params, optax.adam(learning_rate).init(params)


def matmul_adam_step(sizes: Sizes, learning_rate: float = 1e-3):
  """jit((params, adam state), x `[S, B, 784]`) → the same: `matmul_step`'s
  matmuls, then `optax.adam`'s update of every parameter (the weights from
  those matmuls, scaled small; the biases' gradients zero)."""
  optimizer = optax.adam(learning_rate)

  def body(carry, x):
    params, opt_state = carry
    grads = [
      (1e-6 * g, jnp.zeros_like(b))
      for (_, b), g in zip(params, _matmul_grads(sizes, params, x))
    ]
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), None

  @functools.partial(jax.jit, donate_argnums=0)
  def run(carry, batches):
    return jax.lax.scan(body, carry, batches)[0]

  return run


def binarize_epoch(images: np.ndarray, sizes: Sizes, seed: int) -> np.ndarray:
  """An epoch of shuffled, binarised batches `[S, B, 784]` on the host."""
  rng = np.random.default_rng(seed)
  steps = images.shape[0] // sizes.batch
  order = rng.permutation(images.shape[0])[: steps * sizes.batch]
  flat = images[order].reshape(steps, sizes.batch, -1).astype(np.float32)
  return (rng.uniform(size=flat.shape) < flat / 255.0).astype(np.float32)
