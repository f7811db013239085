"""benchmarks/op_profile.py: the per-op trace names the program's own ops.

No times are asserted: only that the ops the trace reports are instructions
of the compiled program, that their self times add up to no more than the
traced call on every thread, and that a dot and an optimizer-style update
land in their groups.
"""

import os
import sys
import time

from absl.testing import absltest
import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "benchmarks"))
import op_profile  # pylint: disable=g-import-not-at-top,wrong-import-position

_W = (64, 48)  # the "parameter" shape


def _program(x, w, m):
  """A dot with a transcendental, and an Adam-like update of w."""
  loss = jnp.sum(jnp.tanh(x @ w))
  m = 0.9 * m + 0.1 * jnp.square(w)
  return loss, w - 1e-3 * w / (jnp.sqrt(m) + 1e-8), m


class OpProfileTest(absltest.TestCase):

  def test_trace_names_compiled_ops(self):
    args = (jnp.ones((256, 64)), jnp.full(_W, 0.5), jnp.ones(_W))
    compiled = jax.jit(_program).lower(*args).compile(
        compiler_options={"xla_cpu_enable_xprof_traceme": True})
    hlo = compiled.as_text()
    run = lambda: jax.block_until_ready(compiled(*args))
    run()
    start = time.perf_counter()
    times = op_profile.self_times(run)
    wall = time.perf_counter() - start
    self.assertNotEmpty(times)
    for op in times:
      self.assertIn(f"%{op} = ", hlo)
    # Ops may run on several threads at once: at most wall × threads.
    self.assertLessEqual(sum(times.values()), wall * (os.cpu_count() or 1))
    groups = {op_profile.describe(hlo, op, frozenset({_W}))[0] for op in times}
    self.assertIn("matmul", groups)
    self.assertIn("update", groups)
    text = op_profile.table(times, hlo, steps=1, param_shapes=frozenset({_W}))
    self.assertIn("µs per step", text)

  def test_dims(self):
    self.assertEqual(op_profile._dims("f32[784,500]{1,0}"), (784, 500))
    self.assertEqual(op_profile._dims("f32[]"), ())
    self.assertEqual(op_profile._dims("(f32[2]{0}, s32[])"), ())


if __name__ == "__main__":
  absltest.main()
