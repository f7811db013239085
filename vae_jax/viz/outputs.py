"""What a run makes of `FigureData` on the host: PNGs and TensorBoard grids.

numpy and matplotlib only (no JAX): `vae_jax.viz.figure_data` computes the
arrays, these functions lay them out. Re-exported by `figure_data`, where
callers usually find them.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, NamedTuple, Optional, Sequence

import numpy as np

from vae_jax.viz import grids
from vae_jax.viz import latent_space
from vae_jax.viz import render

__all__ = [
  "FASHION_MNIST_LABELS",
  "FIGURE_NAMES",
  "FigureData",
  "images_for_tensorboard",
  "save_figures",
]

FASHION_MNIST_LABELS = (
  "T-shirt/top",
  "Trouser",
  "Pullover",
  "Dress",
  "Coat",
  "Sandal",
  "Shirt",
  "Sneaker",
  "Bag",
  "Ankle boot",
)

# File stems, in the order `save_figures` writes them; `{name}.png`.
FIGURE_NAMES = (
  "reconstructions",
  "prior_samples",
  "latent_space",
  "manifold",
  "latent_traversals",
  "training_curves",
  "pseudo_inputs",
)


class FigureData(NamedTuple):
  """The arrays behind the figures: host numpy, images `[..., H, W, C]`.

  Attributes:
    images: `[R, H, W, C]` the test images that are reconstructed.
    reconstructions: `[R, H, W, C]` E[x|z], one z ~ q(z|x; φ) per image.
    prior_samples: `[P, H, W, C]` E[x|z], z ~ p(z) (`model.sample_prior`).
    posterior_means: `[N, D]` μ(x) of every image of the split.
    labels: `[N]` int labels, or None.
    traversals: `[D', S, H, W, C]`, row i traverses dimension traversal_dims[i].
    traversal_values: `[S]` the values of z_d (prior quantiles 0.05..0.95).
    traversal_dims: `[D']` the traversed dimensions (all D, or the D' most
      active when D is large).
    traversal_base: `[D]` the value of the other dimensions.
    traversal_title: says what traversal_base is, for the figure.
    manifold: `[n·n, H, W, C]` in `grids.manifold_grid` order, or None
      (D ≠ 2).
    manifold_values: `[n]` the grid of each axis, or None.
    pseudo_inputs: `[K', H, W, C]` a VampPrior's first pseudo-inputs u_k, or
      None for another prior.
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
  pseudo_inputs: Optional[np.ndarray] = None


def save_figures(
  data: FigureData,
  history: Optional[Sequence[Mapping[str, Any]]],
  directory: str,
  label_names: Optional[Sequence[str]] = None,
) -> dict[str, str]:
  """Writes the PNGs of `data` (and of `history`, when non-empty).

  Returns:
    {name: path} for the names of FIGURE_NAMES that were written: manifold
    only for a 2-D latent, training_curves only with a history,
    pseudo_inputs only for a VampPrior.
  """
  os.makedirs(directory, exist_ok=True)
  path = lambda name: os.path.join(directory, f"{name}.png")
  latent_dim = data.posterior_means.shape[1]
  activity = data.posterior_means.var(axis=0)
  paths = {
    "reconstructions": render.save_reconstructions(
      data.images,
      data.reconstructions,
      path("reconstructions"),
      title="Test images and reconstructions E[x|z], z ~ q(z|x) sampled",
    ),
    "prior_samples": render.save_prior_samples(
      data.prior_samples, path("prior_samples")
    ),
    "latent_space": latent_space.save_latent_space(
      data.posterior_means,
      data.labels,
      path("latent_space"),
      label_names=label_names,
    ),
  }
  if data.manifold is not None and data.manifold_values is not None:
    paths["manifold"] = render.save_manifold(
      data.manifold, data.manifold_values, path("manifold")
    )
  paths["latent_traversals"] = render.save_latent_traversals(
    data.traversals,
    data.traversal_values,
    path("latent_traversals"),
    title=data.traversal_title,
    row_labels=[
      f"$z_{{{d + 1}}}$  Var μ={activity[d]:.2f}" for d in data.traversal_dims
    ],
  )
  if data.pseudo_inputs is not None:
    paths["pseudo_inputs"] = render.save_prior_samples(
      data.pseudo_inputs,
      path("pseudo_inputs"),
      title="The VampPrior's pseudo-inputs u_k, p(z) = 1/K Σ_k q(z|u_k)",
    )
  if history:
    paths["training_curves"] = render.save_training_curves(
      history,
      path("training_curves"),
      title=f"Training curves (D = {latent_dim}; nats per example)",
    )
  return paths


def images_for_tensorboard(data: FigureData) -> dict[str, np.ndarray]:
  """The image grids of `data`: float32 `[H, W]` (`[H, W, 3]`) in [0, 1].

  reconstructions: rows of test images above rows of their reconstructions;
  prior_samples: 8 per row; latent_traversals: a row per traversed
  dimension; manifold (D = 2 only): z₂ grows upwards, z₁ to the right.
  """
  out = {}
  cols = min(8, len(data.images))
  rows = -(-len(data.images) // cols)
  originals = grids.image_grid(data.images, rows, cols, pad=1)
  recons = grids.image_grid(data.reconstructions, rows, cols, pad=1)
  gap = np.ones((2,) + originals.shape[1:], np.float32)
  out["reconstructions"] = np.concatenate([originals, gap, recons])
  p = len(data.prior_samples)
  out["prior_samples"] = grids.image_grid(
    data.prior_samples, -(-p // min(8, p)), min(8, p), pad=1
  )
  d, s = data.traversals.shape[:2]
  out["latent_traversals"] = grids.image_grid(
    data.traversals.reshape(d * s, *data.traversals.shape[2:]), d, s, pad=1
  )
  if data.manifold is not None and data.manifold_values is not None:
    n = len(data.manifold_values)
    out["manifold"] = grids.image_grid(data.manifold, n, n, pad=1)
  return {k: np.clip(v, 0.0, 1.0) for k, v in out.items()}
