"""Numeric equality of two expressions against the float64 reference interpreter.

Every derivation step is checked this way (in tests, and in the pass whenever
``TENSOROPT_VERIFY=1``): both expressions are evaluated on the same random
inputs, over the whole output, and must agree to float64 rounding. Inputs are
uniform in [-1, 1] with no zeros forced, so a rule that drops a non-zero term
shows up as a difference, not as an accident of the data.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from tensoropt.errors import TensoroptError
from tensoropt.interp import evaluate_expr
from tensoropt.ir.expr import Scope, tensor_names

#: relative tolerance of a float64 comparison (sums of a few thousand terms)
RTOL = 1e-9


class DerivationError(TensoroptError):
    """A derivation step produced an expression that is not equal to its input."""


def random_inputs(shapes: Mapping[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.uniform(-1.0, 1.0, size=s) for n, s in sorted(shapes.items())}


def difference(a: Scope, b: Scope, shapes: Mapping[str, tuple[int, ...]], seed: int = 0) -> float:
    """Max |a - b| / max(1, max |a|) on random float64 inputs (inf for a shape change).

    Two input sets: uniform in [-1, 1], and the same shifted to [-2, -1] so that
    a lost pad under ``Max``/``Min`` (0 read where ``-inf`` was) shows too.
    """
    used = {n: shapes[n] for n in set(tensor_names(a)) | set(tensor_names(b))}
    worst = 0.0
    for xs in (random_inputs(used, seed), {k: v * 0.5 - 1.5 for k, v in random_inputs(used, seed).items()}):
        ya = evaluate_expr(a, xs, dtype=np.float64)
        yb = evaluate_expr(b, xs, dtype=np.float64)
        if ya.shape != yb.shape:
            return float("inf")
        if ya.size:
            worst = max(worst, float(np.max(np.abs(ya - yb)) / max(1.0, float(np.max(np.abs(ya))))))
    return worst


def check_step(before: Scope, after: Scope, shapes: Mapping[str, tuple[int, ...]], what: str) -> None:
    """Raise :class:`DerivationError` naming ``what`` unless the two are equal."""
    d = difference(before, after, shapes)
    if not d <= RTOL:
        raise DerivationError(f"derivation step {what} changed the result (relative difference {d:.3g})")
