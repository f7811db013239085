"""Which compiled ops a program spends its time in: XLA:CPU's own per-op trace.

With `--xla_cpu_enable_xprof_traceme=true` in XLA_FLAGS (set it before JAX
starts its backend: `enable()`), XLA:CPU records every op (thunk) it runs.
`self_times` runs a program once under `jax.profiler.trace` with a Perfetto
trace, and sums each op's *self* time (its time minus that of the ops nested
in it, e.g. a conditional's branches) over the threads. `table` names each op
with what it computes, from the compiled program's HLO text, and groups them:

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

import jax

_TRACE_FLAG = "--xla_cpu_enable_xprof_traceme=true"
# Events of the runtime and of Python, not of the program's ops.
_NOT_OPS = re.compile(r"^\$|ThunkExecutor|Await|PjRt|Pjit|Handle |Wait for|"
                      r"ThreadpoolListener|Allocate|ParseArguments|"
                      r"PythonRefManager|^end: ")


def enable() -> None:
  """Turns XLA:CPU's per-op trace on; call before JAX's first computation."""
  flags = os.environ.get("XLA_FLAGS", "")
  if _TRACE_FLAG not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {_TRACE_FLAG}".strip()


def self_times(run) -> dict[str, float]:
  """Seconds of self time per op name over one call of `run()` (blocking)."""
  with tempfile.TemporaryDirectory() as path:
    with jax.profiler.trace(path, create_perfetto_trace=True):
      run()
    trace_file, = glob.glob(os.path.join(path, "**", "*.trace.json.gz"),
                            recursive=True)
    with gzip.open(trace_file) as f:
      events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  by_thread = collections.defaultdict(list)
  for e in events:
    if e.get("ph") == "X" and not _NOT_OPS.search(e["name"]):
      by_thread[(e["pid"], e["tid"])].append(e)
  totals = collections.Counter()
  for thread in by_thread.values():
    thread.sort(key=lambda e: (e["ts"], -e["dur"]))
    open_events, child = [], collections.Counter()
    for i, e in enumerate(thread):
      while open_events and (thread[open_events[-1]]["ts"]
                             + thread[open_events[-1]]["dur"] <= e["ts"]):
        open_events.pop()
      if open_events:
        child[open_events[-1]] += e["dur"]
      open_events.append(i)
    for i, e in enumerate(thread):
      totals[e["name"]] += (e["dur"] - child[i]) * 1e-6  # µs → s
  return dict(totals)


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
  found = re.search(rf"%{re.escape(op)} = (\(.*?\)|\S+) ([a-z][\w-]*)\((.*)",
                    hlo)
  if not found:
    return "other", "?"
  shape, kind, rest = found.groups()
  called = re.search(r"calls=%([\w.\-]+)", rest)
  body = _computations(hlo).get(called.group(1), "") if called else ""
  ops = sorted(set(re.findall(r"= \S+ ([a-z][\w-]*)\(", body))
               - {"parameter", "constant", "broadcast", "bitcast"}) or [kind]
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


def table(times: dict[str, float], hlo: str, steps: int, top: int = 12,
          param_shapes=frozenset()) -> str:
  """The `top` ops and the groups' totals, in µs per step and % of all."""
  total = sum(times.values())
  groups = collections.Counter()
  rows = []
  for op, seconds in sorted(times.items(), key=lambda kv: -kv[1]):
    group, what = describe(hlo, op, param_shapes)
    groups[group] += seconds
    if len(rows) < top:
      rows.append(f"  {1e6 * seconds / steps:8.1f} µs {100 * seconds / total:5.1f}%"
                  f"  {group:9} {op:28} {what}")
  summary = "  ".join(f"{g} {100 * s / total:.0f}%"
                      for g, s in groups.most_common())
  return "\n".join([f"  {1e6 * total / steps:8.1f} µs per step in ops: "
                    f"{summary}", *rows])
