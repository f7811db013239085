"""All the figures of a trained VAE from (model, params, test split, history).

Two steps, so the trainer can log the same pictures to TensorBoard without
re-rendering matplotlib (the second step, numpy only, is `vae_jax.viz.outputs`,
re-exported here):

    data = compute_figure_data(model, params, images, labels, image_shape, rng)
    paths = save_figures(data, history, directory, label_names)  # PNGs
    grids = images_for_tensorboard(data)              # name → [H, W] array

`write_all_figures` does the first two in one call.

What is drawn (Kingma & Welling 2014 notation; E[x|z] is
`model.decode_mean(params, z)`, probabilities for a Bernoulli decoder, never
logits). The latent figures are of the top layer, the one the prior is on;
the other layers stay at the posterior means of the anchor image.

  reconstructions     x and E[x|z] with z ~ q(z|x; φ) *sampled*, not z = μ
  prior_samples       E[x|z], z ~ p(z) from `model.sample_prior` (learned
                      priors too)
  latent_space        posterior means μ(x) of the whole split (PCA when D > 2)
  manifold            E[x|z] over a grid of prior quantiles (only D = 2)
  latent_traversals   E[x|z] as one z_d runs over prior quantiles 0.05..0.95
  training_curves     ELBO, KL, log-likelihood per epoch (when history is given)

The model sees one example at a time: its methods are `jax.vmap`ped over
examples, so a model written for one `x` of its `event_shape` (an MLP's
`[D]`, a conv net's `[H, W, C]`) works unchanged.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax.math import priors
from vae_jax.math.model import VAEModel, top_layer
from vae_jax.viz import grids
from vae_jax.viz.outputs import (
  FASHION_MNIST_LABELS,
  FIGURE_NAMES,
  FigureData,
  images_for_tensorboard,
  save_figures,
)

__all__ = [
  "FASHION_MNIST_LABELS",
  "FIGURE_NAMES",
  "FigureData",
  "compute_figure_data",
  "images_for_tensorboard",
  "save_figures",
  "write_all_figures",
]  # FigureData and the host-side savers live in vae_jax.viz.outputs

# The most examples one compiled encoder call sees.
_MAX_CHUNK = 1000
_TRAVERSE_AROUND = ("posterior_mean", "zero")
_MAX_PSEUDO_INPUTS = 64  # a VampPrior's first pseudo-inputs are drawn


def compute_figure_data(
  model: VAEModel,
  params: Any,
  images: Any,
  labels: Optional[Any],
  image_shape: Sequence[int],
  rng: jax.Array,
  *,
  num_reconstructions: int = 16,
  num_prior_samples: int = 64,
  num_traversal_steps: int = 9,
  traverse_around: str = "posterior_mean",
  anchor_index: int = 0,
  max_traversal_dims: int = 32,
  manifold_size: int = 15,
  chunk_size: int = _MAX_CHUNK,
) -> FigureData:
  """Encodes the split and decodes every latent the figures need.

  The traversal and manifold grids are quantiles of N(0, 1) per dimension
  (`grids.prior_quantile_grid`): they assume the prior p(z) = N(0, I). Prior
  samples come from the model's own `sample_prior`, whatever its prior.

  Args:
    model: the VAE (`vae_jax.math.model.VAEModel`); encode and decode are
      called on one example at a time, under `jax.vmap`.
    params: its parameters (a pytree).
    images: float in [0, 1], flat `[N, H·W·C]` or `[N, *event_shape]` (e.g.
      `[N, H, W, C]`); numpy or on the device. Reshaped to the model's
      `event_shape` for encoding.
    labels: int `[N]` or None.
    image_shape: `(H, W, C)` with H·W·C the size of one example; the shape
      the figures draw.
    rng: PRNG key; the figures are a deterministic function of it.
    num_reconstructions: R, test images reconstructed (the first R).
    num_prior_samples: P, samples from the prior.
    num_traversal_steps: S, values per traversed dimension.
    traverse_around: "posterior_mean" — the other dimensions at μ(x) of test
      image `anchor_index`; or "zero" — at 0, the mean of N(0, I).
    anchor_index: the test image whose μ(x) anchors the traversals.
    max_traversal_dims: when D is larger, traverse only the dimensions with
      the largest Var_x[μ_d(x)] (the active units of Burda et al., 2016).
    manifold_size: n, the manifold is n×n (D = 2 only).
    chunk_size: examples per compiled encoder call (at most 1000).

  Returns:
    FigureData of host numpy arrays.
  """
  if traverse_around not in _TRAVERSE_AROUND:
    raise ValueError(
      f"traverse_around={traverse_around!r}; choose one of {_TRAVERSE_AROUND}"
    )
  image_shape = tuple(int(s) for s in image_shape)
  if not np.issubdtype(np.asarray(images[:1]).dtype, np.floating):
    raise ValueError(
      f"images must be floats in [0, 1], got dtype {images.dtype}: divide "
      "uint8 pixels by their maximum (255) first"
    )
  images = np.asarray(images, dtype=np.float32)
  n, example_size = images.shape[0], int(np.prod(images.shape[1:]))
  event_shape = tuple(int(s) for s in model.event_shape)
  if int(np.prod(image_shape)) != example_size:
    raise ValueError(
      f"image_shape {image_shape} does not hold the "
      f"{example_size} values of an example {images.shape[1:]}"
    )
  if int(np.prod(event_shape)) != example_size:
    raise ValueError(
      f"the model's event_shape {event_shape} does not hold "
      f"the {example_size} values of an example "
      f"{images.shape[1:]}"
    )
  if labels is not None:
    labels = np.asarray(labels)
    if labels.shape != (n,):
      raise ValueError(f"labels must be [{n}], got {labels.shape}")
  if not 0 <= anchor_index < n:
    raise ValueError(f"anchor_index={anchor_index} outside [0, {n})")
  top = top_layer(model)
  latent_dim = int(np.prod(model.latent_shapes[top]))
  recon_rng, prior_rng = jax.random.split(rng)
  stats_rng = jax.random.fold_in(rng, 2)  # the parents of conditional layers
  examples = images.reshape(n, *event_shape)
  stats = _stats_in_chunks(
    model, params, examples, stats_rng, min(chunk_size, _MAX_CHUNK)
  )
  means = stats[top][0].reshape(n, latent_dim)

  # Every latent to decode, concatenated so one compiled decoder call does all.
  r = min(num_reconstructions, n)
  z_posterior = _host(
    _sample_posteriors(model, params, examples[:r], recon_rng)
  )  # z ~ q(z|x)
  z_prior = _host(_sample_prior(model, params, prior_rng, num_prior_samples))

  traversal_values = grids.prior_quantile_grid(num_traversal_steps)
  if traverse_around == "posterior_mean":
    base = means[anchor_index]
    traversal_title = (
      "Latent traversals: $z_d$ over prior quantiles "
      f"0.05–0.95\nother dimensions at μ(x) of test image "
      f"{anchor_index}"
    )
  else:
    base = np.zeros(latent_dim, np.float32)
    traversal_title = (
      "Latent traversals: $z_d$ over prior quantiles "
      "0.05–0.95\nother dimensions at 0 (the prior mean)"
    )
  activity = means.var(axis=0)  # Var_x[μ_d(x)], [D]
  if latent_dim > max_traversal_dims:
    dims = np.sort(np.argsort(-activity, kind="stable")[:max_traversal_dims])
    traversal_title += (
      f"; the {max_traversal_dims} most active of {latent_dim} dimensions"
    )
  else:
    dims = np.arange(latent_dim)
  z_traversal = np.tile(
    base.astype(np.float32), (len(dims), len(traversal_values), 1)
  )
  z_traversal[np.arange(len(dims)), :, dims] = traversal_values  # [D', S, D]

  # The top layer's values; the other layers at the anchor's posterior means.
  anchor = {name: stats[name][0][anchor_index] for name in stats}
  top_blocks = [z_traversal.reshape(-1, latent_dim)]
  manifold_values = None
  if latent_dim == 2:
    manifold_values = grids.prior_quantile_grid(manifold_size)
    top_blocks.append(grids.manifold_grid(manifold_values))
  blocks = [z_posterior, z_prior] + [
    _around(anchor, top, b.reshape(-1, *model.latent_shapes[top]))
    for b in top_blocks
  ]
  decoded = _decode_means(model, params, _concatenate(blocks))
  decoded = decoded.reshape(-1, *image_shape)
  sizes = np.cumsum([len(next(iter(b.values()))) for b in blocks])[:-1]
  parts = np.split(decoded, sizes)

  return FigureData(
    images=images[:r].reshape(r, *image_shape),
    reconstructions=parts[0],
    prior_samples=parts[1],
    posterior_means=means,
    labels=labels,
    traversals=parts[2].reshape(len(dims), len(traversal_values), *image_shape),
    traversal_values=traversal_values,
    traversal_dims=dims,
    traversal_base=np.asarray(base),
    traversal_title=traversal_title,
    manifold=parts[3] if latent_dim == 2 else None,
    manifold_values=manifold_values,
    pseudo_inputs=_pseudo_inputs(model, params, image_shape),
  )


def write_all_figures(
  model: VAEModel,
  params: Any,
  images: Any,
  labels: Optional[Any],
  image_shape: Sequence[int],
  history: Optional[Sequence[Mapping[str, Any]]],
  directory: str,
  rng: jax.Array,
  label_names: Optional[Sequence[str]] = None,
  **options,
) -> dict[str, str]:
  """`compute_figure_data` then `save_figures`: {name: path of the PNG}.

  `options` go to `compute_figure_data` (num_reconstructions, traverse_around,
  manifold_size, ...).
  """
  data = compute_figure_data(
    model, params, images, labels, image_shape, rng, **options
  )
  return save_figures(data, history, directory, label_names)


def _pseudo_inputs(model, params, image_shape) -> Optional[np.ndarray]:
  """A VampPrior's first pseudo-inputs as images, else None."""
  if not isinstance(getattr(model, "prior_component", None), priors.VampPrior):
    return None
  u = np.asarray(priors.pseudo_inputs(params["prior"]), np.float32)
  return u[:_MAX_PSEUDO_INPUTS].reshape(-1, *image_shape)


def _host(z) -> dict[str, np.ndarray]:
  return {name: np.asarray(v, np.float32) for name, v in z.items()}


def _concatenate(blocks) -> dict[str, np.ndarray]:
  return {name: np.concatenate([b[name] for b in blocks]) for name in blocks[0]}


def _around(anchor, top: str, values: np.ndarray) -> dict[str, np.ndarray]:
  """z with the top layer `values` `[M, ...]`, the others at `anchor`."""
  m = values.shape[0]
  z = {
    name: np.broadcast_to(np.asarray(v, np.float32), (m, *v.shape))
    for name, v in anchor.items()
  }
  z[top] = values.astype(np.float32)
  return z


def _stats_in_chunks(
  model: VAEModel, params, images: np.ndarray, rng, chunk: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{layer: (μ, logvar) `[N, ...]`}, one compiled call per ≤ `chunk` rows.

  `images` are `[N, *event_shape]`; example n draws its parents with
  fold_in(rng, n). The last chunk is padded to full size so a single
  program serves all.
  """
  n = images.shape[0]
  chunk = max(1, min(chunk, n))
  padded = -(-n // chunk) * chunk
  if padded > n:
    images = np.concatenate(
      [images, np.zeros((padded - n,) + images.shape[1:], images.dtype)]
    )
  keys = jax.vmap(jax.random.fold_in, (None, 0))(rng, jnp.arange(padded))
  parts = [
    _posterior_stats(
      model, params, images[start : start + chunk], keys[start : start + chunk]
    )
    for start in range(0, padded, chunk)
  ]

  def joined(name: str, i: int) -> np.ndarray:
    return np.asarray(jnp.concatenate([p[name][i] for p in parts]))[:n].astype(
      np.float32
    )

  return {name: (joined(name, 0), joined(name, 1)) for name in parts[0]}


def _decode_means(model: VAEModel, params, z) -> np.ndarray:
  """E[x|z] `[M, *event_shape]` of z with leaves `[M, ...]`, not logits."""
  return np.asarray(_decoder_mean(model, params, z), dtype=np.float32)


# The model is a static argument (models are frozen dataclasses, hashable),
# so the figures of every epoch reuse one compiled program per (model, input
# shape). vmap: the model's methods see one example, whatever its event_shape.
@functools.partial(jax.jit, static_argnums=0)
def _posterior_stats(model: VAEModel, params, x, keys):
  return jax.vmap(model.posterior_stats, in_axes=(None, 0, 0))(params, x, keys)


@functools.partial(jax.jit, static_argnums=0)
def _sample_posteriors(model: VAEModel, params, x, rng):
  """One draw z ~ q(z|x_n) per example, leaves `[N, ...]`."""
  keys = jax.vmap(jax.random.fold_in, (None, 0))(rng, jnp.arange(x.shape[0]))
  one = lambda x_n, key: jax.tree_util.tree_map(
    lambda v: v[0], model.sample_posterior(params, x_n, key, 1)[0]
  )
  return jax.vmap(one)(x, keys)


@functools.partial(jax.jit, static_argnums=0)
def _decoder_mean(model: VAEModel, params, z):
  return jax.vmap(model.decode_mean, in_axes=(None, 0))(params, z)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _sample_prior(model: VAEModel, params, rng: jax.Array, num: int):
  return model.sample_prior(params, rng, num)
