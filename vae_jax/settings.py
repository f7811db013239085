"""Every setting of a run, declared once: default, type, bounds, meaning, role.

    Setting("kl_weight", 1.0, TRACED, "β of the training loss after warm-up",
            check=Number(0.0, high=1e6))

The rest is derived from `SETTINGS`: `configs/default.py`'s config, the
checks of `vae_jax.validation`, which settings a resumed run may change, how
a sweep groups its members into compiled programs, the `--config` flag's
help and the docs' config reference (`reference_markdown`). A setting's type
is its default's.

Roles (`Role`):

  traced   a traced input of the train step (`vae_jax.step.Hyperparams`):
           the members of one vmapped sweep program may differ in it;
  static   shapes a compiled program (a `StepConfig`, `BatchFeed` or
           model field, the data's shape, the evaluation's batch);
  run      the run's alone; it never reaches a compiled program.

Two flags cut across the roles. `resumable`: a resumed run may change it
(`--config.epochs` extends a run; `streaming`, `skip_nonfinite_updates` and
`num_devices` feed the same steps). `per_member`: the members of one sweep
program may differ in it although it is not traced (the seed, and when a
member stops).

No JAX here, so a bad setting is reported before JAX starts.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any, Callable, Optional, Tuple

from vae_jax import names

__all__ = [
  "Role",
  "Setting",
  "SETTINGS",
  "BY_NAME",
  "INT32_MAX",
  "defaults",
  "resumable",
  "shared_by_sweep_program",
  "traced",
  "help_text",
  "reference_markdown",
  "show",
  "Integer",
  "Number",
  "Choice",
  "Sizes",
  "NonEmpty",
  "Registered",
  "Rule",
]

INT32_MAX = 2**31 - 1
# Sizes past these would not fit in memory on any machine this runs on; they
# are refused rather than hanging in initialisation.
MAX_WIDTH = 1 << 16
MAX_SAMPLES = 1 << 20


class Role(enum.Enum):
  TRACED = "traced"
  STATIC = "static"
  RUN = "run"


TRACED, STATIC, RUN = Role.TRACED, Role.STATIC, Role.RUN

# A check returns '' for a good value, else what the value must be.
Check = Callable[[Any], str]


def show(value: Any) -> str:
  """A value as it is written on the command line."""
  if isinstance(value, (tuple, list)):
    return ",".join(show(v) for v in value)
  return repr(value) if isinstance(value, str) else str(value)


@dataclasses.dataclass(frozen=True)
class Integer:
  low: int
  high: int = INT32_MAX

  def __call__(self, value: int) -> str:
    if self.low <= value <= self.high:
      return ""
    return f"it must be an integer from {self.low} to {self.high}"


@dataclasses.dataclass(frozen=True)
class Number:
  low: float
  inclusive: bool = True
  high: float = 1e30

  def __call__(self, value: float) -> str:
    ok = math.isfinite(value) and (
      value >= self.low if self.inclusive else value > self.low
    )
    if ok and value <= self.high:
      return ""
    return (
      f"it must be a finite number {'>=' if self.inclusive else '>'} "
      f"{self.low}" + (f" and <= {self.high:g}" if self.high < 1e30 else "")
    )


@dataclasses.dataclass(frozen=True)
class Choice:
  options: Tuple[str, ...]
  hint: str = ""  # appended to the list, e.g. "or '' for the model's own"

  def __call__(self, value: str) -> str:
    real = tuple(o for o in self.options if o)
    if value in self.options:
      return ""
    return f"choose one of {list(real)}" + (
      f", {self.hint}" if self.hint else ""
    )


@dataclasses.dataclass(frozen=True)
class Sizes:
  """A non-empty tuple of sizes from 1 to MAX_WIDTH; `must` says so."""

  must: str

  def __call__(self, value: tuple) -> str:
    ok = len(value) >= 1 and all(1 <= v <= MAX_WIDTH for v in value)
    return "" if ok else self.must.format(MAX_WIDTH=MAX_WIDTH)


@dataclasses.dataclass(frozen=True)
class NonEmpty:
  must: str

  def __call__(self, value: str) -> str:
    return "" if value else self.must


@dataclasses.dataclass(frozen=True)
class Registered:
  """A model's or prior's name: registered, or `package.module:factory`
  (vae_jax.nets.registry raises its own ConfigError)."""

  kind: str  # model | prior

  def __call__(self, value: str) -> str:
    from vae_jax.nets import registry  # pylint: disable=g-import-not-at-top

    (
      registry.check_model_name
      if self.kind == "model"
      else registry.check_prior_name
    )(value)
    return ""


@dataclasses.dataclass(frozen=True)
class Rule:
  """Any predicate, with what the value must be."""

  ok: Callable[[Any], bool]
  must: str

  def __call__(self, value: Any) -> str:
    return "" if self.ok(value) else self.must


@dataclasses.dataclass(frozen=True)
class Setting:
  name: str
  default: Any
  role: Role
  meaning: str
  section: str = ""
  check: Optional[Check] = None
  resumable: bool = False
  per_member: bool = False


def _declare() -> Tuple[Setting, ...]:
  out = []
  section = ""

  def s(name, default, role, meaning, check=None, **flags):
    out.append(
      Setting(
        name, default, role, " ".join(meaning.split()), section, check, **flags
      )
    )

  section = "Data"
  s("dataset", "fashion_mnist", STATIC, "A TFDS name, or idx (with data_dir).")
  s(
    "data_dir",
    "",
    RUN,
    "Where this dataset's files are; '' = the default places.",
  )
  s(
    "binarization",
    "dynamic",
    STATIC,
    "dynamic (a new draw each epoch) | static (one draw) | none (grey levels).",
    Choice(names.BINARIZATIONS),
  )
  s(
    "validation_size",
    0,
    STATIC,
    "Examples carved from the end of train for validation and early stopping.",
    Integer(0),
  )
  s(
    "train_split",
    "train",
    STATIC,
    "The source's training split (TFDS slicing works).",
    NonEmpty("name a split, e.g. train"),
  )
  s(
    "test_split",
    "test",
    STATIC,
    "The source's test split.",
    NonEmpty("name a split, e.g. test"),
  )
  s(
    "image_layout",
    "",
    STATIC,
    "flat [N, H·W·C] | image [N, H, W, C] | '' "
    "= the model's own (mlp, hvae, ladder: flat; conv, conv_hvae: image).",
    Choice(("",) + names.LAYOUTS, "or '' for the model's own"),
  )

  section = "Model"
  s(
    "model",
    "mlp",
    STATIC,
    "mlp | conv | hvae | conv_hvae | ladder | "
    "package.module:factory (vae_jax.nets.registry).",
    Registered("model"),
  )
  s(
    "latent_dim",
    20,
    STATIC,
    "Latent size; hvae and conv_hvae: the size of each of their two layers.",
    Integer(1, MAX_WIDTH),
  )
  s(
    "latent_dims",
    (40, 20, 10),
    STATIC,
    "ladder only: the sizes of its L ≥ 2 layers z_1 (bottom), …, z_L.",
    Sizes(
      "give the layer sizes from 1 to {MAX_WIDTH}, the bottom layer "
      "first, e.g. --config.latent_dims=40,20,10"
    ),
  )
  s(
    "prior",
    "standard_normal",
    STATIC,
    "p(z) of the top layer: "
    "standard_normal | vamp | mog | package.module:factory "
    "(vae_jax.nets.registry).",
    Registered("prior"),
  )
  s(
    "num_pseudo_inputs",
    500,
    STATIC,
    "vamp: K pseudo-inputs u_k, p(z) = 1/K Σ_k q(z|u_k).",
    Integer(1, MAX_WIDTH),
  )
  s(
    "num_components",
    10,
    STATIC,
    "mog: mixture components.",
    Integer(1, MAX_WIDTH),
  )
  s(
    "hidden_dims",
    (500,),
    STATIC,
    "Widths of the dense layers (conv: those between the convolutions and z).",
    Sizes(
      "give one or more widths from 1 to {MAX_WIDTH}, e.g. "
      "--config.hidden_dims=500 or 300,300"
    ),
  )
  s(
    "conv_channels",
    (32, 64),
    STATIC,
    "conv, conv_hvae: channels of the stride-2 layers (each halves H and W).",
    Sizes(
      "give one or more channel counts from 1 to {MAX_WIDTH}, e.g. "
      "--config.conv_channels=32,64"
    ),
  )
  s(
    "activation",
    "relu",
    STATIC,
    "A jax.nn function; glu = gated layers "
    "(not for conv; conv_hvae gates its convolutions too).",
    Choice(names.ACTIVATIONS),
  )
  s(
    "likelihood",
    "bernoulli",
    STATIC,
    "p(x|z): bernoulli (binary data) | "
    "gaussian (fixed variance) | gaussian_learned_variance | "
    "continuous_bernoulli (data in [0, 1]).",
    Choice(tuple(names.LIKELIHOODS)),
  )
  s(
    "gaussian_variance",
    1.0,
    STATIC,
    "gaussian: the fixed variance.",
    Number(0.0, inclusive=False),
  )
  s(
    "min_log_variance",
    math.log(1e-3),
    STATIC,
    "gaussian_learned_variance: the floor of the log variance.",
    Number(-1e3, high=1e3),
  )
  s(
    "compute_dtype",
    "float32",
    STATIC,
    "float32 | bfloat16: the dtype the "
    "networks compute in (parameters, optimizer state and the loss stay "
    "float32).",
    Choice(names.COMPUTE_DTYPES),
  )

  section = "Objective"
  s(
    "objective",
    "elbo",
    STATIC,
    "elbo | iwae (Burda et al., K = num_samples).",
    Choice(tuple(names.OBJECTIVES)),
  )
  s(
    "num_samples",
    1,
    STATIC,
    "K: z draws per example in the training objective.",
    Integer(1, MAX_SAMPLES),
  )
  s(
    "analytic_kl",
    True,
    STATIC,
    "The ELBO's KL in closed form where the "
    "model has one, else Monte Carlo; iwae: only the reported ELBO's KL.",
  )
  s(
    "free_bits",
    0.0,
    TRACED,
    "λ nats per latent dimension (elbo only); 0 = off.",
    Number(0.0, high=1e6),
  )
  s(
    "kl_weight",
    1.0,
    TRACED,
    "β of the training loss after warm-up.",
    Number(0.0, high=1e6),
  )
  s(
    "kl_warmup_epochs",
    0.0,
    TRACED,
    "Epochs over which β rises linearly from 0.",
    Number(0.0, high=1e9),
  )

  section = "Optimisation"
  s(
    "optimizer",
    "adam",
    STATIC,
    "An optax optimizer taking learning_rate "
    "(checked last: the check imports optax).",
  )
  s(
    "learning_rate",
    1e-3,
    TRACED,
    "The base rate (at lr_reference_batch_size when lr_batch_scaling is on).",
    Number(0.0, inclusive=False, high=1e3),
  )
  s(
    "lr_batch_scaling",
    "none",
    TRACED,
    "none | linear | sqrt: the rate used "
    "is learning_rate × (batch_size / lr_reference_batch_size)^(0 | 1 | ½), "
    "computed on the host into the traced rate.",
    Choice(names.LR_BATCH_SCALINGS),
  )
  s(
    "lr_reference_batch_size",
    128,
    TRACED,
    "The batch size at which learning_rate is the rate used.",
    Integer(1, MAX_SAMPLES),
  )
  s(
    "lr_schedule",
    "constant",
    STATIC,
    "constant | cosine | warmup_cosine | "
    "exponential | linear | onecycle (vae_jax.optim.lr_factor); onecycle "
    "rises over lr_warmup_epochs.",
    Choice(names.LR_SCHEDULES),
  )
  s(
    "lr_warmup_epochs",
    0.0,
    TRACED,
    "Epochs of the rate's linear warm-up.",
    Number(0.0, high=1e9),
  )
  s(
    "lr_floor",
    0.0,
    TRACED,
    "The factor on learning_rate at the end of "
    "cosine, warmup_cosine, linear and onecycle (0: they decay to 0).",
    Number(0.0, high=1.0),
  )
  s(
    "lr_schedule_epochs",
    0.0,
    TRACED,
    "Length of a decaying schedule in "
    "epochs; 0 = epochs. Set it to extend a run later (a larger epochs on "
    "resume) without changing the rates of the steps already taken.",
    Number(0.0, high=1e9),
  )
  s(
    "grad_clip_norm",
    0.0,
    STATIC,
    "The global norm gradients are clipped to; 0 = off.",
    Number(0.0),
  )
  s(
    "ema_decay",
    0.0,
    TRACED,
    "d of an exponential moving average of the "
    "parameters (optax.ema's debiased one), in [0, 1); 0 = off. When on, "
    "evaluation, the best checkpoint and log p(x) use the average. Whether "
    "it is on is static, the decay traced.",
    Rule(
      lambda v: math.isfinite(v) and 0 <= v < 1,
      "it must be a number >= 0 and < 1 (0 turns the average off), e.g. 0.999",
    ),
  )
  s("batch_size", 128, STATIC, "Examples per step.", Integer(1, MAX_SAMPLES))

  section = "Training loop"
  s(
    "epochs",
    10,
    RUN,
    "Epochs to train; a larger value on resume extends the run.",
    Integer(1, 10**7),
    resumable=True,
    per_member=True,
  )
  s(
    "steps_per_chunk",
    0,
    STATIC,
    "Steps per dispatch and checkpoint; 0 = an epoch.",
    Integer(0),
  )
  s(
    "streaming",
    False,
    STATIC,
    "Feed batches from a host-side prefetching "
    "iterator, a chunk at a time, instead of keeping the data on the device "
    "(the same batches, bit for bit).",
    resumable=True,
  )
  s(
    "early_stopping_patience",
    0,
    RUN,
    "Epochs without a better validation ELBO before the run stops; 0 = off.",
    Integer(0),
    per_member=True,
  )
  s(
    "skip_nonfinite_updates",
    False,
    STATIC,
    "False: a step with a "
    "non-finite loss, gradient or state stops the run (exit status 3) at its "
    "last good checkpoint. True: such updates are skipped and counted in "
    "metrics.jsonl's skipped_updates; the run stops when more than 10% of "
    "an epoch's are skipped.",
    resumable=True,
  )

  section = "Evaluation"
  s(
    "eval_batch_size",
    1000,
    STATIC,
    "Examples per evaluation batch.",
    Integer(1, MAX_SAMPLES),
  )
  s(
    "eval_num_samples",
    1,
    STATIC,
    "z draws per example of the evaluation ELBO.",
    Integer(1, MAX_SAMPLES),
  )
  s(
    "final_importance_samples",
    0,
    RUN,
    "K of the importance-sampled test "
    "log p(x) at the end of the run, on the best checkpoint (else the last "
    "state); 0 = off.",
    Integer(0, MAX_SAMPLES),
  )
  s(
    "seed",
    0,
    RUN,
    "The seed of initialisation, data order, draws and evaluation.",
    Integer(0, INT32_MAX),
    per_member=True,
  )

  section = "Run directory and devices"
  s(
    "keep_checkpoints",
    2,
    RUN,
    "Latest chunk-boundary checkpoints kept.",
    Integer(1, 1000),
  )
  s(
    "num_devices",
    1,
    STATIC,
    "Devices (per process) of the data-parallel "
    "mesh: the batch is split over them, parameters replicated; 0 = all "
    "local devices. A sweep shards its members over them instead.",
    Integer(0, 1 << 16),
    resumable=True,
  )
  return tuple(out)


SETTINGS: Tuple[Setting, ...] = _declare()
BY_NAME = {s.name: s for s in SETTINGS}


def defaults() -> dict:
  """Every setting's default, in declaration order."""
  return {s.name: s.default for s in SETTINGS}


def resumable() -> Tuple[str, ...]:
  """The settings a resumed run may change."""
  return tuple(s.name for s in SETTINGS if s.resumable)


def traced() -> Tuple[str, ...]:
  """The settings that reach the step as traced inputs."""
  return tuple(s.name for s in SETTINGS if s.role is TRACED)


def shared_by_sweep_program() -> Tuple[str, ...]:
  """The settings that members of one compiled sweep program share: all but
  the traced and the per-member ones."""
  return tuple(
    s.name for s in SETTINGS if s.role is not TRACED and not s.per_member
  )


def _flags(s: Setting) -> str:
  return ", ".join(
    [s.role.value]
    + (["resumable"] if s.resumable else [])
    + (["per sweep member"] if s.per_member else [])
  )


def help_text() -> str:
  """The settings, one line each, for the `--config` flag's help."""
  lines = []
  for s in SETTINGS:
    lines.append(f"  {s.name}={show(s.default)} [{_flags(s)}]: {s.meaning}")
  return "\n".join(lines)


def reference_markdown() -> str:
  """The docs' config reference: a table per section."""
  parts = [
    "Every setting, as `--config.NAME=VALUE`. Roles: **traced** — a "
    "traced input of the train step (a sweep varies it inside one "
    "compiled program); **static** — shapes a compiled program; "
    "**run** — the run's alone. *resumable*: a resumed run may change "
    "it; *per sweep member*: members of one sweep program may differ "
    "in it.",
    "",
  ]
  for section in dict.fromkeys(s.section for s in SETTINGS):
    parts += [
      f"## {section}",
      "",
      "| setting | default | role | meaning |",
      "|---|---|---|---|",
    ]
    for s in SETTINGS:
      if s.section == section:
        meaning = s.meaning.replace("|", "\\|")
        parts.append(
          f"| `{s.name}` | `{show(s.default)}` | {_flags(s)} | {meaning} |"
        )
    parts.append("")
  return "\n".join(parts)
