"""`python -m experiments.sweep` from a checkout: see vae_jax/launchers/sweep.py.

The same main as the installed console script `vae-jax-sweep`.
"""

from vae_jax.launchers.sweep import run

if __name__ == "__main__":
  run()
