"""`python -m experiments.train` from a checkout: see vae_jax/launchers/train.py.

The same main as the installed console script `vae-jax-train`.
"""

from vae_jax.launchers.train import run

if __name__ == "__main__":
  run()
