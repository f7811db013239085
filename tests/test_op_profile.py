"""benchmarks/op_profile.py: the per-op trace names the program's own ops.

No times are asserted: only that the ops the trace reports are instructions
of the compiled program, that their self times add up to no more than the
traced call on every thread and their wall shares to no more than the call,
that an op's wall share is at most its busy time, and that a dot and an
optimizer-style update land in their groups. The wall-share arithmetic is
checked on hand-made overlapping events.
"""

import os
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(
  0,
  os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"
  ),
)
import op_profile  # pylint: disable=g-import-not-at-top,wrong-import-position

_W = (64, 48)  # the "parameter" shape


def _program(x, w, m):
  """A dot with a transcendental, and an Adam-like update of w."""
  loss = jnp.sum(jnp.tanh(x @ w))
  m = 0.9 * m + 0.1 * jnp.square(w)
  return loss, w - 1e-3 * w / (jnp.sqrt(m) + 1e-8), m


def test_trace_names_compiled_ops():
  args = (jnp.ones((256, 64)), jnp.full(_W, 0.5), jnp.ones(_W))
  compiled = (
    jax.jit(_program)
    .lower(*args)
    .compile(compiler_options={"xla_cpu_enable_xprof_traceme": True})
  )
  hlo = compiled.as_text()
  run = lambda: jax.block_until_ready(compiled(*args))
  run()
  start = time.perf_counter()
  times = op_profile.op_times(run)
  wall = time.perf_counter() - start
  assert times.busy
  assert set(times.busy) == set(times.wall)
  for op in times.busy:
    assert f"%{op} = " in hlo
    # 1e-9 s: the trace's microseconds, summed in float64.
    assert times.wall[op] <= times.busy[op] + 1e-9
  # Ops may run on several threads at once: at most wall × threads.
  assert sum(times.busy.values()) <= wall * (os.cpu_count() or 1)
  assert sum(times.wall.values()) <= wall
  groups = {
    op_profile.describe(hlo, op, frozenset({_W}))[0] for op in times.busy
  }
  assert "matmul" in groups
  assert "update" in groups
  text = op_profile.table(times, hlo, steps=1, param_shapes=frozenset({_W}))
  assert "µs of wall time per step" in text


def test_wall_shares_split_overlaps_and_skip_parents():
  # Thread 1: "a" 0–100 µs with "inner" nested at 20–40; thread 2: "b"
  # 50–150. Innermost: a 0–20, inner 20–40, a 40–100; b 50–150.
  thread_1 = [
    {"name": "a", "ts": 0.0, "dur": 100.0},
    {"name": "inner", "ts": 20.0, "dur": 20.0},
  ]
  thread_2 = [
    {"name": "b", "ts": 50.0, "dur": 100.0},
    {"name": "empty", "ts": 60.0, "dur": 0.0},
  ]  # holds no time
  segments = (
    op_profile._innermost(thread_1)  # pylint: disable=protected-access
    + op_profile._innermost(thread_2)
  )  # pylint: disable=protected-access
  assert sorted(segments) == [
    (0.0, 20.0, "a"),
    (20.0, 40.0, "inner"),
    (40.0, 100.0, "a"),
    (50.0, 150.0, "b"),
  ]
  shares = op_profile._wall_shares(segments)  # pylint: disable=protected-access
  # a: 20 + 10 alone, 50 shared with b; b: 50 shared, 50 alone.
  want = {"a": 20 + 10 + 25, "inner": 20, "b": 25 + 50}
  for op, microseconds in want.items():
    assert round(abs(shares[op] - microseconds * 1e-6), 12) == 0
  assert round(abs(sum(shares.values()) - 150e-6), 12) == 0


def test_dims():
  assert op_profile._dims("f32[784,500]{1,0}") == (784, 500)
  assert op_profile._dims("f32[]") == ()
  assert op_profile._dims("(f32[2]{0}, s32[])") == ()
