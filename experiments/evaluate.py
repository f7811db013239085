"""`python -m experiments.evaluate` from a checkout: see vae_jax/launchers/evaluate.py.

The same main as the installed console script `vae-jax-evaluate`.
"""

from vae_jax.launchers.evaluate import run

if __name__ == "__main__":
  run()
