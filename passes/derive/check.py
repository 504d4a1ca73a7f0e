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
from tensoropt.ir.expr import Scope, tensor_names, walk

#: relative tolerance of a float64 comparison (sums of a few thousand terms)
RTOL = 1e-9


class DerivationError(TensoroptError):
    """A derivation step produced an expression that is not equal to its input."""


def random_inputs(shapes: Mapping[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.uniform(-1.0, 1.0, size=s) for n, s in sorted(shapes.items())}


def _names(e: Scope) -> set[str]:
    out = set(tensor_names(e))
    for n in walk(e):
        if isinstance(n, Scope):
            out |= set(tensor_names(n))
    return out


def difference(a: Scope, b: Scope, shapes: Mapping[str, tuple[int, ...]], seed: int = 0) -> float:
    """Max |a - b| / max(1, max |a|) on random float64 inputs (inf for a shape change)."""
    used = {n: shapes[n] for n in _names(a) | _names(b)}
    xs = random_inputs(used, seed)
    ya = evaluate_expr(a, xs, dtype=np.float64)
    yb = evaluate_expr(b, xs, dtype=np.float64)
    if ya.shape != yb.shape:
        return float("inf")
    if ya.size == 0:
        return 0.0
    return float(np.max(np.abs(ya - yb)) / max(1.0, float(np.max(np.abs(ya)))))


def check_step(before: Scope, after: Scope, shapes: Mapping[str, tuple[int, ...]], what: str) -> None:
    """Raise :class:`DerivationError` naming ``what`` unless the two are equal."""
    d = difference(before, after, shapes)
    if not d <= RTOL:
        raise DerivationError(f"derivation step {what} changed the result (relative difference {d:.3g})")
