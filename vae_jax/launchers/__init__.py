"""The absl mains behind `experiments/*.py` and the console scripts.

vae-jax-train      = python -m experiments.train
vae-jax-evaluate   = python -m experiments.evaluate
"""
