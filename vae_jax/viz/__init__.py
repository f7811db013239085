"""Figures of a trained VAE: a JAX side that computes them, a numpy side that draws.

`figure_data` encodes a test split and decodes every latent the figures need
(under `jax.vmap` over examples, so any `vae_jax.math.model.VAEModel` works,
an MLP's or a conv net's) and returns host numpy arrays, `FigureData`.
Everything else needs no JAX: `grids` tiles images and builds latent grids,
`render` and `latent_space` write PNGs of exact pixel sizes with matplotlib's
Agg renderer, and `outputs` turns `FigureData` into a run's PNGs and
TensorBoard grids.
"""
