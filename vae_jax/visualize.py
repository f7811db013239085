"""All the figures of a trained VAE from (model, params, test split, history).

Two steps, so the trainer can log the same pictures to TensorBoard without
re-rendering matplotlib:

    data = compute_figure_data(model, params, images, labels, image_shape, rng)
    paths = save_figures(data, history, directory, label_names)  # PNGs
    grids = images_for_tensorboard(data)              # name → [H, W] array

`write_all_figures` does the first two in one call.

What is drawn (Kingma & Welling 2014 notation; E[x|z] is
`model.mean_of_output(decode(z))`, probabilities for a Bernoulli decoder, never
logits):

  reconstructions     x and E[x|z] with z ~ q(z|x; φ) *sampled*, not z = μ
  prior_samples       E[x|z], z ~ p(z) = N(0, I)
  latent_space        posterior means μ(x) of the whole split (PCA when D > 2)
  manifold            E[x|z] over a grid of prior quantiles (only D = 2)
  latent_traversals   E[x|z] as one z_d runs over prior quantiles 0.05..0.95
  training_curves     ELBO, KL, log-likelihood per epoch (when history is given)
"""

from __future__ import annotations

import functools
import os
from typing import Any, Mapping, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import figures
from vae_jax.model import VAEModel, decoder_mean

__all__ = [
    "FASHION_MNIST_LABELS",
    "FIGURE_NAMES",
    "FigureData",
    "compute_figure_data",
    "images_for_tensorboard",
    "save_figures",
    "write_all_figures",
]

FASHION_MNIST_LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

# File stems, in the order `save_figures` writes them; `{name}.png`.
FIGURE_NAMES = ("reconstructions", "prior_samples", "latent_space", "manifold",
                "latent_traversals", "training_curves")

# The most examples one compiled encoder call sees.
_MAX_CHUNK = 1000
_TRAVERSE_AROUND = ("posterior_mean", "zero")


class FigureData(NamedTuple):
  """The arrays behind the figures: host numpy, images `[..., H, W, C]`.

  Attributes:
    images: `[R, H, W, C]` the test images that are reconstructed.
    reconstructions: `[R, H, W, C]` E[x|z], one z ~ q(z|x; φ) per image.
    prior_samples: `[P, H, W, C]` E[x|z], z ~ N(0, I).
    posterior_means: `[N, D]` μ(x) of every image of the split.
    labels: `[N]` int labels, or None.
    traversals: `[D', S, H, W, C]`, row i traverses dimension traversal_dims[i].
    traversal_values: `[S]` the values of z_d (prior quantiles 0.05..0.95).
    traversal_dims: `[D']` the traversed dimensions (all D, or the D' most
      active when D is large).
    traversal_base: `[D]` the value of the other dimensions.
    traversal_title: says what traversal_base is, for the figure.
    manifold: `[n·n, H, W, C]` in `figures.manifold_grid` order, or None
      (D ≠ 2).
    manifold_values: `[n]` the grid of each axis, or None.
  """

  images: np.ndarray
  reconstructions: np.ndarray
  prior_samples: np.ndarray
  posterior_means: np.ndarray
  labels: Optional[np.ndarray]
  traversals: np.ndarray
  traversal_values: np.ndarray
  traversal_dims: np.ndarray
  traversal_base: np.ndarray
  traversal_title: str
  manifold: Optional[np.ndarray]
  manifold_values: Optional[np.ndarray]


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

  Args:
    model: the VAE's functions.
    params: its parameters `{"encoder": ..., "decoder": ...}`.
    images: float `[N, data_dim]` in [0, 1] (a flattened test split; numpy
      or on the device).
    labels: int `[N]` or None.
    image_shape: `(H, W, C)` with H·W·C = data_dim.
    rng: PRNG key; the figures are a deterministic function of it.
    num_reconstructions: R, test images reconstructed (the first R).
    num_prior_samples: P, samples from the prior.
    num_traversal_steps: S, values per traversed dimension.
    traverse_around: "posterior_mean" — the other dimensions at μ(x) of test
      image `anchor_index`; or "zero" — at the prior's mean 0.
    anchor_index: the test image whose μ(x) anchors the traversals.
    max_traversal_dims: when D is larger, traverse only the dimensions with
      the largest Var_x[μ_d(x)] (the active units of Burda et al., 2016).
    manifold_size: n, the manifold is n×n (D = 2 only).
    chunk_size: examples per compiled encoder call (at most 1000).

  Returns:
    FigureData of host numpy arrays.
  """
  if traverse_around not in _TRAVERSE_AROUND:
    raise ValueError(f"traverse_around={traverse_around!r}; choose one of "
                     f"{_TRAVERSE_AROUND}")
  image_shape = tuple(int(s) for s in image_shape)
  if not np.issubdtype(np.asarray(images[:1]).dtype, np.floating):
    raise ValueError(
        f"images must be floats in [0, 1], got dtype {images.dtype}: divide "
        "uint8 pixels by their maximum (255) first")
  images = np.asarray(images, dtype=np.float32)
  n, data_dim = images.shape
  if int(np.prod(image_shape)) != data_dim:
    raise ValueError(f"image_shape {image_shape} does not hold "
                     f"data_dim={data_dim} values")
  if labels is not None:
    labels = np.asarray(labels)
    if labels.shape != (n,):
      raise ValueError(f"labels must be [{n}], got {labels.shape}")
  if not 0 <= anchor_index < n:
    raise ValueError(f"anchor_index={anchor_index} outside [0, {n})")
  latent_dim = int(model.latent_dim)

  means, logvars = _encode_in_chunks(model, params, images,
                                     min(chunk_size, _MAX_CHUNK))

  # Every latent to decode, concatenated so one compiled decoder call does all.
  recon_rng, prior_rng = jax.random.split(rng)
  r = min(num_reconstructions, n)
  eps = np.asarray(jax.random.normal(recon_rng, (r, latent_dim)))
  z_posterior = means[:r] + np.exp(0.5 * logvars[:r]) * eps  # z ~ q(z|x)
  z_prior = np.asarray(jax.random.normal(prior_rng,
                                         (num_prior_samples, latent_dim)))

  traversal_values = figures.prior_quantile_grid(num_traversal_steps)
  if traverse_around == "posterior_mean":
    base = means[anchor_index]
    traversal_title = ("Latent traversals: $z_d$ over prior quantiles "
                       f"0.05–0.95\nother dimensions at μ(x) of test image "
                       f"{anchor_index}")
  else:
    base = np.zeros(latent_dim, np.float32)
    traversal_title = ("Latent traversals: $z_d$ over prior quantiles "
                       "0.05–0.95\nother dimensions at 0 (the prior mean)")
  activity = means.var(axis=0)  # Var_x[μ_d(x)], [D]
  if latent_dim > max_traversal_dims:
    dims = np.sort(np.argsort(-activity, kind="stable")[:max_traversal_dims])
    traversal_title += (f"; the {max_traversal_dims} most active of "
                        f"{latent_dim} dimensions")
  else:
    dims = np.arange(latent_dim)
  z_traversal = np.tile(base.astype(np.float32),
                        (len(dims), len(traversal_values), 1))
  z_traversal[np.arange(len(dims)), :, dims] = traversal_values  # [D', S, D]

  blocks = [z_posterior, z_prior, z_traversal.reshape(-1, latent_dim)]
  manifold_values = None
  if latent_dim == 2:
    manifold_values = figures.prior_quantile_grid(manifold_size)
    blocks.append(figures.manifold_grid(manifold_values))
  decoded = _decode_means(model, params,
                          np.concatenate(blocks).astype(np.float32))
  decoded = decoded.reshape(-1, *image_shape)
  sizes = np.cumsum([len(b) for b in blocks])[:-1]
  parts = np.split(decoded, sizes)

  return FigureData(
      images=images[:r].reshape(r, *image_shape),
      reconstructions=parts[0],
      prior_samples=parts[1],
      posterior_means=means,
      labels=labels,
      traversals=parts[2].reshape(len(dims), len(traversal_values),
                                  *image_shape),
      traversal_values=traversal_values,
      traversal_dims=dims,
      traversal_base=np.asarray(base),
      traversal_title=traversal_title,
      manifold=parts[3] if latent_dim == 2 else None,
      manifold_values=manifold_values,
  )


def save_figures(data: FigureData,
                 history: Optional[Sequence[Mapping[str, Any]]],
                 directory: str,
                 label_names: Optional[Sequence[str]] = None) -> dict[str, str]:
  """Writes the PNGs of `data` (and of `history`, when non-empty).

  Returns:
    {name: path} for the names of FIGURE_NAMES that were written: manifold
    only for a 2-D latent, training_curves only with a history.
  """
  os.makedirs(directory, exist_ok=True)
  path = lambda name: os.path.join(directory, f"{name}.png")
  latent_dim = data.posterior_means.shape[1]
  activity = data.posterior_means.var(axis=0)
  paths = {
      "reconstructions": figures.save_reconstructions(
          data.images, data.reconstructions, path("reconstructions"),
          title="Test images and reconstructions E[x|z], z ~ q(z|x) sampled"),
      "prior_samples": figures.save_prior_samples(
          data.prior_samples, path("prior_samples")),
      "latent_space": figures.save_latent_space(
          data.posterior_means, data.labels, path("latent_space"),
          label_names=label_names),
  }
  if data.manifold is not None:
    paths["manifold"] = figures.save_manifold(
        data.manifold, data.manifold_values, path("manifold"))
  paths["latent_traversals"] = figures.save_latent_traversals(
      data.traversals, data.traversal_values, path("latent_traversals"),
      title=data.traversal_title,
      row_labels=[f"$z_{{{d + 1}}}$  Var μ={activity[d]:.2f}"
                  for d in data.traversal_dims])
  if history:
    paths["training_curves"] = figures.save_training_curves(
        history, path("training_curves"),
        title=f"Training curves (D = {latent_dim}; nats per example)")
  return paths


def images_for_tensorboard(data: FigureData) -> dict[str, np.ndarray]:
  """The image grids of `data`: float32 `[H, W]` (`[H, W, 3]`) in [0, 1].

  reconstructions: rows of test images above rows of their reconstructions;
  prior_samples: 8 per row; latent_traversals: a row per traversed
  dimension; manifold (D = 2 only): z₂ grows upwards, z₁ to the right.
  """
  grids = {}
  cols = min(8, len(data.images))
  rows = -(-len(data.images) // cols)
  originals = figures.image_grid(data.images, rows, cols, pad=1)
  recons = figures.image_grid(data.reconstructions, rows, cols, pad=1)
  gap = np.ones((2,) + originals.shape[1:], np.float32)
  grids["reconstructions"] = np.concatenate([originals, gap, recons])
  p = len(data.prior_samples)
  grids["prior_samples"] = figures.image_grid(
      data.prior_samples, -(-p // min(8, p)), min(8, p), pad=1)
  d, s = data.traversals.shape[:2]
  grids["latent_traversals"] = figures.image_grid(
      data.traversals.reshape(d * s, *data.traversals.shape[2:]), d, s, pad=1)
  if data.manifold is not None:
    n = len(data.manifold_values)
    grids["manifold"] = figures.image_grid(data.manifold, n, n, pad=1)
  return {k: np.clip(v, 0.0, 1.0) for k, v in grids.items()}


def write_all_figures(model: VAEModel, params: Any, images: Any,
                      labels: Optional[Any], image_shape: Sequence[int],
                      history: Optional[Sequence[Mapping[str, Any]]],
                      directory: str, rng: jax.Array,
                      label_names: Optional[Sequence[str]] = None,
                      **options) -> dict[str, str]:
  """`compute_figure_data` then `save_figures`: {name: path of the PNG}.

  `options` go to `compute_figure_data` (num_reconstructions, traverse_around,
  manifold_size, ...).
  """
  data = compute_figure_data(model, params, images, labels, image_shape, rng,
                             **options)
  return save_figures(data, history, directory, label_names)


def _encode_in_chunks(model: VAEModel, params, images: np.ndarray,
                      chunk: int) -> tuple[np.ndarray, np.ndarray]:
  """(μ, logvar) `[N, D]` each, one compiled call per chunk of ≤ `chunk` rows.

  The last chunk is padded to full size so a single program serves all.
  """
  n = images.shape[0]
  chunk = max(1, min(chunk, n))
  padded = -(-n // chunk) * chunk
  if padded > n:
    images = np.concatenate(
        [images, np.zeros((padded - n, images.shape[1]), images.dtype)])
  means, logvars = [], []
  for start in range(0, padded, chunk):
    mean, logvar = _encode(model, params, images[start:start + chunk])
    means.append(mean)
    logvars.append(logvar)
  return (np.asarray(jnp.concatenate(means))[:n].astype(np.float32),
          np.asarray(jnp.concatenate(logvars))[:n].astype(np.float32))


def _decode_means(model: VAEModel, params, z: np.ndarray) -> np.ndarray:
  """E[x|z] `[M, data_dim]`: `mean_of_output` of the decoder, not logits."""
  return np.asarray(_decoder_mean(model, params, z), dtype=np.float32)


# The model is a static argument (VAEModel is hashable), so the figures of
# every epoch reuse one compiled program per (model, input shape).
@functools.partial(jax.jit, static_argnums=0)
def _encode(model: VAEModel, params, x):
  return model.encode(params, x)


_decoder_mean = jax.jit(decoder_mean, static_argnums=0)
