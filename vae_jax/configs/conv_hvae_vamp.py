"""The two-layer HVAE with conv networks and the VampPrior, paper protocol.

configs/hvae_vamp.py with `model=conv_hvae` (`vae_jax.nets.hierarchical`):
both q layers share one stack of gated stride-2 4×4 convolutions (32, 64
channels; 28 → 14 → 7) before their 300-unit gated dense layers, and
p(x|z1, z2) ends with the conv decoder's gated sub-pixel upsampling; the
500 pseudo-inputs are images that go through q(z2|x). Same protocol as
configs/paper.py. Our conv variant of the paper's convHVAE, not its exact
architecture.

Command: python -m experiments.train --config=vae_jax/configs/conv_hvae_vamp.py --workdir=runs/conv_hvae_vamp
then:    python -m experiments.evaluate --workdir=runs/conv_hvae_vamp --checkpoint=best --num_importance_samples=5000
Result: not yet run (then: scripts/record_run.py runs/conv_hvae_vamp writes benchmarks/results/conv_hvae_vamp.json).
"""

from vae_jax.configs import hvae_vamp


def get_config():
  c = hvae_vamp.get_config()
  c.model = "conv_hvae"
  c.conv_channels = (32, 64)
  c.final_importance_samples = 0
  return c
