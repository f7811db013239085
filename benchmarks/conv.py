r"""The conv VAE's patch convolution against flax's nn.Conv, in a scan.

    .venv/bin/python benchmarks/conv.py                          # batch 128
    .venv/bin/python benchmarks/conv.py --batch=8 --steps=2 --repeats=1  # tiny

`vae_jax.nets.conv.PatchConv` writes each convolution as shifted slices
times a matrix because XLA:CPU ran the gradient of `lax.conv_general_dilated`
many times slower inside a `lax.scan` than outside one (the module's
docstring). This measures whether that still holds on this backend: the
conv VAE's convolutions (two 4×4 stride-2 layers down, 28×28×1 → 14×14×c₁
→ 7×7×c₂, and the decoder's two 3×3 ones at 7×7 and 14×14), their forward
and backward pass and an SGD update, `--steps` steps in one jitted
`lax.scan`, once with PatchConv and once with nn.Conv of the same
parameters. Repeats alternate the two; the table gives images/s (medians)
and patch ÷ nn.Conv. Then one JSON line per row. --record=PATH also writes
the table as a result record (benchmarks/records.py).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
from absl import app
from absl import flags

from vae_jax.nets import conv

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import records  # pylint: disable=g-import-not-at-top,wrong-import-position

_BATCH = flags.DEFINE_integer("batch", 128, "Images per step.")
_STEPS = flags.DEFINE_integer("steps", 20, "Steps per timed scan.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Alternating repeats.")
_CHANNELS = flags.DEFINE_list("channels", ["32", "64"], "c₁, c₂.")
_RECORD = flags.DEFINE_string(
  "record", "", "Also write the table as a record (JSON) to this path."
)


class _Stack(nn.Module):
  """The conv VAE's four convolutions, with `patch` or nn.Conv layers."""

  channels: tuple
  patch: bool

  def _layer(self, features, kernel, stride, name):
    if self.patch:
      return conv.PatchConv(features, kernel, stride, name=name)
    return nn.Conv(
      features, (kernel, kernel), strides=stride, padding="SAME", name=name
    )

  @nn.compact
  def __call__(self, x):
    c1, c2 = self.channels
    h = nn.relu(self._layer(c1, 4, 2, "down1")(x))  # [B, 14, 14, c1]
    h = nn.relu(self._layer(c2, 4, 2, "down2")(h))  # [B, 7, 7, c2]
    h = nn.relu(self._layer(4 * c1, 3, 1, "up1")(h))  # [B, 7, 7, 4 c1]
    h = conv.depth_to_space(h)  # [B, 14, 14, c1]
    return self._layer(4, 3, 1, "up2")(h)  # [B, 14, 14, 4]


def _program(patch: bool, channels: tuple, steps: int):
  model = _Stack(channels, patch)

  def loss(params, x):
    return jnp.mean(jnp.square(model.apply(params, x)))

  def body(params, x):
    grads = jax.grad(loss)(params, x)
    return jax.tree_util.tree_map(
      lambda p, g: p - 1e-3 * g, params, grads
    ), None

  @jax.jit
  def run(params, images):  # images [steps, B, 28, 28, 1]
    params, _ = jax.lax.scan(body, params, images, length=steps)
    return params

  return model, run


def main(argv):
  del argv
  channels = tuple(int(c) for c in _CHANNELS.value)
  batch, steps = _BATCH.value, _STEPS.value
  images = jax.random.uniform(jax.random.key(0), (steps, batch, 28, 28, 1))
  rows = {}
  params = None
  for name, patch in (("patch", True), ("nn.Conv", False)):
    model, run = _program(patch, channels, steps)
    if params is None:  # the same parameters for both (same names, shapes)
      params = model.init(jax.random.key(1), images[0])
    start = time.perf_counter()
    compiled = run.lower(params, images).compile()
    rows[name] = dict(
      run=compiled, compile_sec=time.perf_counter() - start, rates=[]
    )
    jax.block_until_ready(compiled(params, images))  # warm-up
  for repeat in range(_REPEATS.value):
    order = list(rows.items())
    for _, row in order if repeat % 2 == 0 else order[::-1]:
      start = time.perf_counter()
      jax.block_until_ready(row["run"](params, images))
      row["rates"].append(steps * batch / (time.perf_counter() - start))
  medians = {k: statistics.median(r["rates"]) for k, r in rows.items()}
  print(
    f"conv stack 28×28×1 → {channels[0]} → {channels[1]} → up, batch "
    f"{batch}, {steps} steps per scan, {jax.default_backend()} "
    f"({jax.devices()[0].device_kind}), median of {_REPEATS.value}"
  )
  print(f"{'layers':<8} {'images/s':>10} {'÷ nn.Conv':>10} {'compile s':>10}")
  for name, row in rows.items():
    print(
      f"{name:<8} {medians[name]:>10.0f} "
      f"{medians[name] / medians['nn.Conv']:>10.2f} "
      f"{row['compile_sec']:>10.2f}"
    )
  for name, row in rows.items():
    print(
      json.dumps(
        dict(
          layers=name,
          images_per_sec=medians[name],
          ratio_to_nn_conv=medians[name] / medians["nn.Conv"],
          compile_sec=row["compile_sec"],
          repeats=row["rates"],
          batch=batch,
          steps=steps,
          backend=jax.default_backend(),
        )
      )
    )
  if _RECORD.value:
    column = records.Column
    records.write(
      records.new(
        "conv",
        records.BENCHMARK,
        title=f"The conv VAE's convolutions in a lax.scan (28×28×1 → "
        f"{channels[0]} → {channels[1]} → up, batch {batch}): PatchConv "
        "against nn.Conv",
        config=dict(
          channels=list(channels),
          batch=batch,
          steps=steps,
          repeats=_REPEATS.value,
        ),
        table=records.Table(
          columns=(
            column(key="layers", header="layers"),
            column(key="images_per_sec", header="images/s", format=",.0f"),
            column(
              key="ratio_to_nn_conv",
              header="÷ nn.Conv",
              format=".2f",
              suffix="×",
            ),
            column(key="compile_sec", header="compile s", format=".2f"),
          ),
          rows=tuple(
            dict(
              layers=name,
              images_per_sec=medians[name],
              ratio_to_nn_conv=medians[name] / medians["nn.Conv"],
              compile_sec=row["compile_sec"],
            )
            for name, row in rows.items()
          ),
        ),
        notes=f"Forward, backward and an SGD update, {steps} steps per "
        f"jitted scan; compiled beforehand, {_REPEATS.value} alternating "
        "repeats, medians.",
      ),
      _RECORD.value,
    )
    print(f"wrote {_RECORD.value}")


if __name__ == "__main__":
  from vae_jax import cli  # pylint: disable=g-import-not-at-top

  cli.use_cpu_if_alone()
  app.run(main)
