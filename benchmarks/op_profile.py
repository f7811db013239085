"""Which compiled ops a program spends its time in: XLA:CPU's own per-op trace.

With `--xla_cpu_enable_xprof_traceme=true` in XLA_FLAGS (set it before JAX
starts its backend: `enable()`), XLA:CPU records every op (thunk) it runs.
`op_times` runs a program once under `jax.profiler.trace` with a Perfetto
trace and gives each op two times (`OpTimes`): its *busy* time, its self
time (minus the ops nested in it, e.g. a conditional's branches) summed over
the threads, and its *share of the wall time*, each instant split among the
ops running at it. XLA:CPU runs independent ops at once on its threads, and
two memory-bound passes that overlap each take about twice as long: by busy
time they look slow, by wall share each is charged half the overlap. (On
the trainer: its two big Adam passes overlap 84% of the time and each took
about 300 µs busy against plain's 160–180 µs, which runs them one after the
other; an earlier reading of busy times blamed the non-finite check's
conditional for that.) `table` sorts ops by wall share, names each op with
what it computes, from the compiled program's HLO text, and groups them:

  matmul     a dot (XLA's own or a YNNPACK/oneDNN library fusion around one)
  rng        threefry arithmetic (shifts, xors, rotates of uint32)
  update     elementwise work on parameter-shaped arrays (`param_shapes`):
             the optimizer's moments and update, the gradients' squares
  exp/log    other fusions with a transcendental (softplus, sigmoid, exp)
  control    loops and conditionals: their own bookkeeping, or (on CPU)
             the copies they make
  other      the rest: adds, selects, reductions, copies

The groups are heuristics read off the ops, not a proof; the op table above
them says exactly which op is which.
"""

from __future__ import annotations

import collections
import functools
import glob
import gzip
import json
import os
import re
import tempfile
from typing import NamedTuple

import jax

_TRACE_FLAG = "--xla_cpu_enable_xprof_traceme=true"
# Events of the runtime and of Python, not of the program's ops.
_NOT_OPS = re.compile(
  r"^\$|ThunkExecutor|Await|PjRt|Pjit|Handle |Wait for|"
  r"ThreadpoolListener|Allocate|ParseArguments|"
  r"PythonRefManager|^end: "
)


def enable() -> None:
  """Turns XLA:CPU's per-op trace on; call before JAX's first computation."""
  flags = os.environ.get("XLA_FLAGS", "")
  if _TRACE_FLAG not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {_TRACE_FLAG}".strip()


class OpTimes(NamedTuple):
  """Seconds per op name over one traced call.

  busy: each op's self time (its time minus that of the ops nested in it),
    summed over the threads; ops that run at once on several threads each
    count in full, so the total can exceed the wall time.
  wall: each op's share of the wall time: every instant is split evenly
    among the ops running at it (a convention: the trace does not say which
    op an overlapped instant is "for"). The total is the wall time during
    which some op runs. Two memory-bound passes that run at once each take
    longer (busy) yet may take no more wall time together than one after
    the other; `wall` charges each half of their overlap.
  """

  busy: dict[str, float]
  wall: dict[str, float]


def op_times(run) -> OpTimes:
  """`OpTimes` of one call of `run()` (blocking), from a Perfetto trace."""
  with tempfile.TemporaryDirectory() as path:
    with jax.profiler.trace(path, create_perfetto_trace=True):
      run()
    (trace_file,) = glob.glob(
      os.path.join(path, "**", "*.trace.json.gz"), recursive=True
    )
    with gzip.open(trace_file) as f:
      events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  by_thread = collections.defaultdict(list)
  for e in events:
    if e.get("ph") == "X" and not _NOT_OPS.search(e["name"]):
      by_thread[(e["pid"], e["tid"])].append(e)
  segments = [s for thread in by_thread.values() for s in _innermost(thread)]
  busy = collections.Counter()
  for start, end, name in segments:
    busy[name] += (end - start) * 1e-6  # µs → s
  return OpTimes(dict(busy), _wall_shares(segments))


def _innermost(thread: list) -> list[tuple[float, float, str]]:
  """(start, end, op) segments of one thread's time: who runs, innermost.

  Events of zero length are dropped (they hold no time, and their end
  would sort before their start). Of two events with the same start and
  length, the one listed first counts as the outer one.
  """
  bounds = []
  for i, e in enumerate(thread):
    if e["dur"] <= 0:
      continue
    bounds.append((e["ts"], 1, -e["dur"], i))  # starts: outer ones first
    bounds.append((e["ts"] + e["dur"], 0, 0, i))  # ends before starts
  bounds.sort()
  segments, stack, last = [], [], None
  for time, is_start, _, i in bounds:
    if stack and time > last:
      segments.append((last, time, thread[stack[-1]]["name"]))
    last = time
    if is_start:
      stack.append(i)
    elif i in stack:
      stack.remove(i)
  return segments


def _wall_shares(segments) -> dict[str, float]:
  """Each instant's length split evenly among the segments covering it."""
  bounds = sorted(
    [(s, 1, name) for s, _, name in segments]
    + [(e, -1, name) for _, e, name in segments]
  )
  shares, running, last = collections.Counter(), collections.Counter(), None
  for time, change, name in bounds:
    count = sum(running.values())
    if count and time > last:
      for op, n in running.items():
        shares[op] += (time - last) * 1e-6 * n / count
    last = time
    running[name] += change
    if not running[name]:
      del running[name]
  return dict(shares)


@functools.lru_cache(maxsize=4)
def _computations(hlo: str) -> dict[str, str]:
  """HLO computation name → its body text (parsed once per program)."""
  bodies, name, lines = {}, None, []
  for line in hlo.splitlines():
    head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
    if head:
      name, lines = head.group(1), []
    elif line.startswith("}") and name:
      bodies[name] = "\n".join(lines)
      name = None
    elif name:
      lines.append(line)
  return bodies


def describe(hlo: str, op: str, param_shapes=frozenset()) -> tuple[str, str]:
  """(group, shape and ops) of the instruction `op` in the compiled `hlo`.

  `param_shapes`: the parameters' shapes as tuples, for the `update` group.
  """
  found = re.search(
    rf"%{re.escape(op)} = (\(.*?\)|\S+) ([a-z][\w-]*)\((.*)", hlo
  )
  if not found:
    return "other", "?"
  shape, kind, rest = found.groups()
  called = re.search(r"calls=%([\w.\-]+)", rest)
  body = _computations(hlo).get(called.group(1), "") if called else ""
  ops = sorted(
    set(re.findall(r"= \S+ ([a-z][\w-]*)\(", body))
    - {"parameter", "constant", "broadcast", "bitcast"}
  ) or [kind]
  text = " ".join(ops)
  if "dot" in ops or kind in ("dot", "convolution"):
    group = "matmul"
  elif kind in ("conditional", "while", "call"):
    group = "control"
  elif {"shift-right-logical", "xor"} <= set(ops):
    group = "rng"
  elif _dims(shape) in param_shapes or "sqrt" in ops:
    group = "update"
  elif {"exponential", "log", "log-plus-one", "logistic", "tanh"} & set(ops):
    group = "exp/log"
  else:
    group = "other"
  return group, f"{shape[:32]} {text[:60]}"


def _dims(shape: str) -> tuple[int, ...]:
  """(784, 500) from "f32[784,500]{1,0}"; () for tuples and scalars."""
  found = re.match(r"^\w+\[([\d,]*)\]", shape)
  return tuple(int(d) for d in found.group(1).split(",") if d) if found else ()


def table(
  times: OpTimes, hlo: str, steps: int, top: int = 12, param_shapes=frozenset()
) -> str:
  """The `top` ops by wall share and the groups' totals, µs per step.

  Columns: the op's share of the wall time, that as % of the wall time
  with ops running, and its busy (self) time.
  """
  wall, busy = sum(times.wall.values()), sum(times.busy.values())
  groups = collections.Counter()
  rows = []
  for op, seconds in sorted(times.wall.items(), key=lambda kv: -kv[1]):
    group, what = describe(hlo, op, param_shapes)
    groups[group] += seconds
    if len(rows) < top:
      rows.append(
        f"  {1e6 * seconds / steps:8.1f} µs {100 * seconds / wall:5.1f}%"
        f" {1e6 * times.busy.get(op, 0.0) / steps:8.1f} µs"
        f"  {group:9} {op:28} {what}"
      )
  summary = "  ".join(
    f"{g} {100 * s / wall:.0f}%" for g, s in groups.most_common()
  )
  return "\n".join(
    [
      f"  {1e6 * wall / steps:8.1f} µs of wall time per step with ops running "
      f"({1e6 * busy / steps:.1f} µs busy: {busy / wall:.2f} ops at once "
      f"on average): {summary}",
      "      wall share          busy",
      *rows,
    ]
  )
