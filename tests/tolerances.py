"""Tolerances of the tests, derived from the computation each test checks.

No tolerance of the suite is tuned to the output of one machine. Each is

* a bound on float32 rounding from the size of the computation
  (`rounding_atol`, `sum_atol`, `kl_diagonal_atol`). The bound holds for
  any order in which XLA adds the terms on a given CPU; or
* a Monte-Carlo error of a few standard errors, measured on the same draws
  as the estimate (`assert_within_standard_errors`). Keys are fixed, so such
  a check gives the same result on every run.

Rounding model. u = 2⁻²⁴ is float32's unit roundoff, and F32_EPS = 2u. A
basic operation (+ − × ÷, or converting an input to float32) errs by at most
u relative to its result. XLA's float32 exp and log err by at most 2u. Its
sigmoid, softplus and log1p err by at most 4u, and its expm1 by at most 8u
(measured maxima: 1.4u, 2u, 2.3u, 3.9u, 3.5u and 6.1u; these functions are
XLA's own polynomials, not the CPU's). Suppose a computation has at most k
roundings on any path from its inputs to its result. To first order it then
errs by at most k·u·M, where M is the same computation redone with every
input and intermediate value replaced by its absolute value and every
difference by a sum, so that nothing cancels ("absolute-valued evaluation").
M ≥ |result|, and for a sum of exact terms M = Σ|tᵢ|. exp(a) of a computed a
also carries the absolute error of a as relative error, so e^a·(absolute-
valued a) goes into M.

The helpers charge F32_EPS = 2u per counted operation. That is a factor of
2 of margin over a basic operation. exp and log count 1, sigmoid, softplus
and log1p count 2, and expm1 counts 4.
"""

from __future__ import annotations

import math

import numpy as np

F32_EPS = float(np.finfo(np.float32).eps)  # 2⁻²³ = 2u
F64_EPS = float(np.finfo(np.float64).eps)  # the same for float64 references


def rounding_atol(num_ops, magnitude, eps=F32_EPS):
  """num_ops · eps · magnitude: num_ops counted operations on a computation of
  absolute-valued evaluation `magnitude` (scalar or array, elementwise)."""
  return num_ops * eps * np.asarray(magnitude, np.float64)


def sum_atol(num_terms, magnitude, ops_per_term=1, eps=F32_EPS):
  """Bound on the float32 error of a sum of `num_terms` terms, in any order.

  Summing n numbers in any order errs by at most (n − 1)·u·Σ|tᵢ|. That
  covers sequential, pairwise and XLA's vectorised partial sums alike
  (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., §4.2).
  If each term itself carries up to `ops_per_term` counted operations, the
  terms add ops_per_term·eps·M. `magnitude` is M: Σ|tᵢ|, or the absolute-
  valued evaluation of the sum when terms cancel inside. For a mean, pass the
  mean magnitude and count the division as one more operation per term.

  Returns (num_terms + ops_per_term) · eps · magnitude.
  """
  return rounding_atol(num_terms + ops_per_term, magnitude, eps)


def kl_diagonal_atol(mean_q, logvar_q, mean_p=0.0, logvar_p=0.0):
  """Rounding bound of vae_jax's float32 KL(q ‖ p) of diagonal Gaussians.

  KL = ½ Σ_d [expm1(r) − r + (μ_q − μ_p)² e^(−lp)], with r = lq − lp and
  lq, lp the log-variances. This is `kl_diagonal_gaussians`;
  `kl_to_standard_normal` is the case p = N(0, I). The inputs are float32,
  or rounded to float32 once. With L = |lq| + |lp| bounding r and its
  rounding, the absolute-valued term d is
    |expm1 r| + e^r·L + L + (1 + |lp|)·(|μ_q| + |μ_p|)²·e^(−lp),
  where e^r·L is the rounding of r passed through expm1 and (1 + |lp|) is the
  rounding of lp passed through exp. A term has at most 10 roundings of u
  (expm1 counts 8), and the D-term sum adds D − 1 more.
  Returns the bound, elementwise over the leading axes.
  """
  mean_q, logvar_q, mean_p, logvar_p = (
    np.asarray(a, np.float64) for a in (mean_q, logvar_q, mean_p, logvar_p)
  )
  r = logvar_q - logvar_p
  span = np.abs(logvar_q) + np.abs(logvar_p)
  term = (
    np.abs(np.expm1(r))
    + np.exp(r) * span
    + span
    + (1 + np.abs(logvar_p))
    * (np.abs(mean_q) + np.abs(mean_p)) ** 2
    * np.exp(-logvar_p)
  )
  term = np.broadcast_to(
    term,
    np.broadcast_shapes(
      mean_q.shape, logvar_q.shape, mean_p.shape, logvar_p.shape
    ),
  )
  return 0.5 * sum_atol(term.shape[-1], np.sum(term, axis=-1), ops_per_term=5)


def assert_close(actual, desired, atol, err_msg=""):
  """|actual − desired| ≤ atol elementwise, in float64; atol may be an array.

  Unlike np.testing.assert_allclose, this takes one derived tolerance: no
  rtol, which would need a magnitude of its own.
  """
  actual = np.asarray(actual, np.float64)
  desired = np.asarray(desired, np.float64)
  error = np.abs(actual - desired)
  atol = np.broadcast_to(np.asarray(atol, np.float64), error.shape)
  bad = ~(error <= atol)  # NaN fails too
  if np.any(bad):
    with np.errstate(divide="ignore", invalid="ignore"):
      worst = np.unravel_index(
        np.argmax(np.where(bad, np.nan_to_num(error / atol, nan=np.inf), -1.0)),
        error.shape,
      )
    raise AssertionError(
      f"{err_msg} {np.sum(bad)} of {error.size} elements beyond the "
      f"tolerance; worst at {worst}: actual {actual[worst]!r}, desired "
      f"{desired[worst]!r}, error {error[worst]:.3g} > atol "
      f"{atol[worst]:.3g}".strip()
    )


def standard_error(samples):
  """std(samples, ddof=1) / √S along axis 0, in float64: the s.e. of a mean."""
  samples = np.asarray(samples, np.float64)
  return samples.std(axis=0, ddof=1) / math.sqrt(samples.shape[0])


def assert_within_standard_errors(
  estimate, samples, expected, atol=0.0, num_se=4.0
):
  """|estimate − expected| ≤ num_se · s.e. + atol, elementwise.

  samples: `[S, ...]` i.i.d. single-draw values, in float64. Their mean is
  the estimate up to the estimate's own rounding error, which `atol` bounds.
  expected: the exact value. A correct, normally distributed estimate lands
  beyond 4 s.e. with probability 6e-5.
  """
  assert_close(
    estimate,
    expected,
    num_se * standard_error(samples) + atol,
    err_msg=f"beyond {num_se} standard errors:",
  )
