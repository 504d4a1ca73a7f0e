"""TE lowerings of the ops without an Expr (and split) against the registry's NumPy eval.

Each case builds ``te.create_prim_func([*inputs, *outputs])`` for llvm, runs it
and compares with ``REGISTRY[op].eval`` (exactly; floats within 1e-6). Cases
come from ``tests/ops/op_cases.py`` (one table for every op) plus the ones
below: negative indices, every attribute value, dtypes, symbolic dims.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import tvm
from tvm import te, tirx

from tensoropt.codegen.te_ops import LOWERINGS
from tensoropt.interp import _to_unsigned
from tensoropt.ir.types import DTYPES, TensorType, dtype_of
from tensoropt.ops.registry import REGISTRY

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ops"))
from op_cases import CASES

TARGET = tvm.target.Target({"kind": "llvm"})
_rng = np.random.default_rng(7)


def _tvm_shape(shape: Sequence[int | str], syms: dict[str, tirx.Var]) -> tuple[tirx.Expr, ...]:
    return tuple(syms.setdefault(d, tirx.Var(d, "int64")) if isinstance(d, str) else tirx.const(d, "int64")
                 for d in shape)


def _copy_of(x: te.Tensor) -> te.Tensor:
    return te.compute(x.shape, lambda *p: x(*p), name=f"{x.op.name}_copy")


def run_lowered(op: str, xs: Sequence[np.ndarray], attrs: dict,
                symbolic: dict[int, dict[int, str]] | None = None,
                computed_inputs: bool = False) -> list[np.ndarray]:
    """Lower ``op``, build it for llvm and run it on ``xs``.

    ``symbolic`` maps input number -> {axis: symbol name}: those dims become
    ``tirx.Var``s (bound at run time from the arrays' shapes). With
    ``computed_inputs`` the lowering reads copies computed in the same PrimFunc
    (as after fusion) instead of the function's parameters.
    """
    rules = REGISTRY[op]
    a = rules.with_defaults(attrs)
    types = []
    for i, x in enumerate(xs):
        shape: list[int | str] = list(x.shape)
        for ax, name in (symbolic or {}).get(i, {}).items():
            shape[ax] = name
        types.append(TensorType(dtype_of(x.dtype), tuple(shape)))
    outs_t = rules.infer(types, a)
    syms: dict[str, tirx.Var] = {}
    ins = [te.placeholder(_tvm_shape(t.shape, syms), str(t.np_dtype), name=f"x{i}")
           for i, t in enumerate(types)]
    out_shapes = [_tvm_shape(t.shape, syms) for t in outs_t]
    srcs = [_copy_of(x) for x in ins] if computed_inputs else ins
    outs = LOWERINGS[op](srcs, out_shapes, [str(t.np_dtype) for t in outs_t], a)
    assert len(outs) == len(outs_t)
    for o, t in zip(outs, outs_t):
        assert o.dtype == str(t.np_dtype), (o.dtype, t.dtype)
    f = te.create_prim_func([*ins, *outs])
    ex = tvm.compile(tvm.IRModule({"main": f}), target=TARGET)
    bound = {}
    for t, x in zip(types, xs):
        bound.update({d: n for d, n in zip(t.shape, x.shape) if isinstance(d, str)})
    args = [tvm.runtime.tensor(np.array(x, order="C")) for x in xs]  # keeps 0-d arrays 0-d
    res = [tvm.runtime.tensor(np.zeros(tuple(bound[d] if isinstance(d, str) else d for d in t.shape),
                                       t.np_dtype)) for t in outs_t]
    ex["main"](*args, *res)
    return [r.numpy() for r in res]


def check(op: str, xs: Sequence[np.ndarray], attrs: dict,
          symbolic: dict[int, dict[int, str]] | None = None, computed_inputs: bool = False) -> None:
    rules = REGISTRY[op]
    with np.errstate(all="ignore"):  # as the interpreter: NaN -> int casts warn in NumPy
        want = rules.eval(list(xs), rules.with_defaults(attrs))
    got = run_lowered(op, xs, attrs, symbolic, computed_inputs)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, w.dtype, g.shape, w.shape)
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)
        else:
            np.testing.assert_array_equal(g, w)


def rnd(*shape: int, dtype: str = "float32") -> np.ndarray:
    return _rng.uniform(-3, 3, size=shape).astype(dtype)


def ints(*shape: int, lo: int, hi: int, dtype: str = "int64") -> np.ndarray:
    return _rng.integers(lo, hi, size=shape).astype(dtype)


# -- coverage ------------------------------------------------------------------------------


def test_lowerings_cover_ops_without_expr() -> None:
    want = {name for name, r in REGISTRY.items() if r.expr is None} | {"split"}
    assert set(LOWERINGS) == want, (
        f"missing TE lowerings: {sorted(want - set(LOWERINGS))}; "
        f"stale ones: {sorted(set(LOWERINGS) - want)}")


_TABLE = [c for c in CASES if c.op in LOWERINGS]


@pytest.mark.parametrize("case", _TABLE, ids=[c.id for c in _TABLE])
def test_op_cases_table(case) -> None:  # type: ignore[no-untyped-def]
    check(case.op, case.inputs, case.attrs)


# -- cases per op ----------------------------------------------------------------------------

_D = rnd(4, 5, 3)
_N = "n"

CASES_HERE: list[tuple[str, str, list[np.ndarray], dict, dict | None]] = [
    # gather: every axis, negative and scalar indices, int32 indices, symbolic dims
    ("gather", "axis0-neg", [_D, np.array([[-1, 0], [3, -4]], np.int64)], {}, None),
    ("gather", "axis1-i32", [_D, np.array([4, -5, 2], np.int32)], {"axis": 1}, None),
    ("gather", "axis-1-scalar", [_D, np.array(-1, np.int64)], {"axis": -1}, None),
    ("gather", "int-data", [ints(3, 4, lo=-9, hi=9), np.array([2, -1], np.int64)], {"axis": 1}, None),
    ("gather", "sym", [rnd(6, 3), np.array([-6, 5, 0, 2], np.int64)], {}, {0: {0: _N}, 1: {0: "m"}}),
    ("gather", "sym-axis1", [rnd(3, 6), np.array([-6, 5], np.int64)], {"axis": 1}, {0: {1: _N}}),
    # embedding
    ("embedding", "2d-ids", [rnd(7, 4), ints(2, 3, lo=0, hi=7)], {}, None),
    ("embedding", "i32-ids-f64", [rnd(5, 2, dtype="float64"), np.array([4, 0, 4], np.int32)], {}, None),
    ("embedding", "sym", [rnd(9, 4), ints(5, lo=0, hi=9)], {}, {0: {0: "vocab"}, 1: {0: "seq"}}),
    # gather_elements
    ("gather_elements", "axis0", [_D, ints(2, 5, 3, lo=-4, hi=4)], {}, None),
    ("gather_elements", "axis1-i32", [_D, ints(4, 7, 2, lo=-5, hi=5, dtype="int32")], {"axis": 1}, None),
    ("gather_elements", "sym", [rnd(5, 3), ints(4, 3, lo=-5, hi=5)], {}, {0: {0: _N}, 1: {0: "m"}}),
    ("gather_elements", "axis-1-bool", [rnd(3, 4) > 0, ints(3, 6, lo=-4, hi=4)], {"axis": -1}, None),
    # gather_nd
    ("gather_nd", "full-depth", [_D, np.array([[3, -1, 2], [0, 0, -3]], np.int64)], {}, None),
    ("gather_nd", "depth1-neg", [_D, np.array([[[-1]], [[2]]], np.int32)], {}, None),
    ("gather_nd", "batch1", [_D, ints(4, 2, 1, lo=-5, hi=5)], {"batch_dims": 1}, None),
    ("gather_nd", "batch2", [rnd(2, 3, 4, 5), ints(2, 3, 6, 2, lo=-4, hi=4)], {"batch_dims": 2}, None),
    ("gather_nd", "sym", [rnd(5, 3, 2), ints(4, 2, lo=-3, hi=3)], {}, {0: {0: _N}, 1: {0: "m"}}),
    # cast: every kind of conversion
    ("cast", "0d", [np.array(-2.5, np.float32)], {"to": "i32"}, None),
    ("cast", "f32-i64", [np.array([-2.7, -0.5, 0.0, 0.5, 2.9, 1e10], np.float32)], {"to": "i64"}, None),
    ("cast", "f32-i8-wrap", [np.array([-1.5, 127.9, 300.7, -200.2, 70000.0], np.float32)], {"to": "i8"}, None),
    ("cast", "f64-i32", [np.array([-2.5e9, -7.9, 7.9, 2.1e9, np.nan, -np.inf], np.float64)], {"to": "i32"}, None),
    ("cast", "f64-i64-nan", [np.array([np.nan, 1e19, -1e19, -2.0**63, 2.0**62], np.float64)], {"to": "i64"}, None),
    ("cast", "f32-i16", [np.array([-40000.5, 40000.5, 1e10, np.nan], np.float32)], {"to": "i16"}, None),
    ("cast", "f32-u8", [np.array([-1.5, 0.0, 255.9, 300.7, 70000.0, -257.0], np.float32)], {"to": "u8"}, None),
    ("cast", "f64-u32", [np.array([-1.0, 4294967295.0, 123.9], np.float64)], {"to": "u32"}, None),
    ("cast", "f64-u64", [np.array([0.0, 2.0**63, 1.8e19, 12345.7], np.float64)], {"to": "u64"}, None),
    ("cast", "f32-bool", [np.array([0.0, -0.0, np.nan, 1e-30, -2.0, np.inf], np.float32)], {"to": "bool"}, None),
    ("cast", "i64-bool", [np.array([0, -1, 2**40, 1], np.int64)], {"to": "bool"}, None),
    ("cast", "bool-f32", [np.array([True, False, True])], {"to": "f32"}, None),
    ("cast", "bool-u8", [np.array([True, False])], {"to": "u8"}, None),
    ("cast", "i64-u8", [np.array([-1, 256, 255, -129, 2**40 + 7], np.int64)], {"to": "u8"}, None),
    ("cast", "u8-i8", [np.array([0, 127, 128, 255], np.uint8)], {"to": "i8"}, None),
    ("cast", "u8-f32", [np.array([0, 200, 255], np.uint8)], {"to": "f32"}, None),
    ("cast", "i32-f16", [np.array([-3, 0, 2048, 70000], np.int32)], {"to": "f16"}, None),
    ("cast", "f64-f32", [np.array([1e-50, 1.0 / 3, 1e40, -np.inf, np.nan])], {"to": "f32"}, None),
    ("cast", "f16-f64", [np.array([0.1, -65504.0, np.inf], np.float16)], {"to": "f64"}, None),
    ("cast", "i64-i64", [np.array([1, -2], np.int64)], {"to": "i64"}, None),
    ("cast", "sym", [rnd(2, 5)], {"to": "i32"}, {0: {1: _N}}),
    # split
    ("split", "axis0", [rnd(6, 2)], {"split": (1, 2, 3)}, None),
    ("split", "axis-1-empty-part", [ints(2, 5, lo=-9, hi=9, dtype="int32")], {"axis": -1, "split": (2, 0, 3)}, None),
    ("split", "one-bool", [rnd(3, 2) > 0], {"split": (3,)}, None),
    ("split", "sym-other-axis", [rnd(4, 3)], {"split": (1, 3)}, {0: {1: _N}}),
    # topk: both directions, axes, dtypes, ties, NaN, -0.0, k = 0 and k = n
    ("topk", "largest-axis0", [rnd(6, 4)], {"k": 3, "axis": 0}, None),
    ("topk", "smallest-3d", [rnd(2, 5, 3)], {"k": 2, "axis": 1, "largest": False}, None),
    ("topk", "unsorted-flag", [rnd(3, 5)], {"k": 5, "sorted": False}, None),
    ("topk", "k0", [rnd(3, 5)], {"k": 0}, None),
    ("topk", "ties-f32", [np.round(rnd(4, 9))], {"k": 6}, None),
    ("topk", "ties-f32-smallest", [np.round(rnd(4, 9))], {"k": 6, "largest": False}, None),
    ("topk", "nan-zero-inf", [np.array([[0.0, np.nan, -0.0, np.inf, -np.inf, np.nan, 1.0, 0.0]], np.float32)],
     {"k": 8}, None),
    ("topk", "nan-zero-inf-smallest",
     [np.array([[0.0, np.nan, -0.0, np.inf, -np.inf, np.nan, -1.0, 0.0]], np.float64)],
     {"k": 8, "largest": False}, None),
    ("topk", "f16", [rnd(3, 7).astype(np.float16)], {"k": 4}, None),
    ("topk", "i16", [ints(3, 7, lo=-4, hi=4, dtype="int16")], {"k": 4, "largest": False}, None),
    ("topk", "u8", [ints(3, 7, lo=0, hi=4, dtype="uint8")], {"k": 5}, None),
    ("topk", "u32", [np.array([[0, 2**32 - 1, 7, 2**31, 7]], np.uint32)], {"k": 3}, None),
    ("topk", "u64", [np.array([[0, 2**64 - 1, 7, 2**63, 2**63 - 1, 7]], np.uint64)], {"k": 6}, None),
    ("topk", "i8-smallest", [ints(2, 6, lo=-128, hi=128, dtype="int8")], {"k": 3, "largest": False}, None),
    ("topk", "sym", [rnd(3, 8)], {"k": 2}, {0: {1: _N}}),
    # scatter_elements: every reduction, both axes, duplicates, negatives
    *[("scatter_elements", f"dup-{r}-axis0", [rnd(3, 4), np.array([[1, -3, 2, 0], [-2, 1, 2, 0]], np.int64),
                                              rnd(2, 4)], {"reduction": r}, None)
      for r in ("none", "add", "mul", "max", "min")],
    *[("scatter_elements", f"dup-{r}-axis1", [rnd(3, 4), np.array([[1, -3], [2, 0], [-1, 3]], np.int64),
                                              rnd(3, 2)], {"axis": 1, "reduction": r}, None)
      for r in ("none", "add", "mul", "max", "min")],
    ("scatter_elements", "axis-1-i32-idx-int-data",
     [ints(2, 3, 4, lo=-9, hi=9), ints(2, 3, 5, lo=-4, hi=4, dtype="int32"), ints(2, 3, 5, lo=-9, hi=9)],
     {"axis": -1}, None),
    ("scatter_elements", "bool", [rnd(2, 3) > 0, np.array([[2, -1]], np.int64), np.array([[True, False]])],
     {"axis": 1}, None),
    ("scatter_elements", "max-nan",
     [np.array([[1.0, np.nan, 3.0]], np.float32), np.array([[0, 1, 2, 0]], np.int64),
      np.array([[np.nan, 5.0, 2.0, 4.0]], np.float32)], {"axis": 1, "reduction": "max"}, None),
    ("scatter_elements", "min-nan",
     [np.array([[1.0, np.nan, 3.0]], np.float32), np.array([[2, 1, 0, 2]], np.int64),
      np.array([[np.nan, 5.0, 2.0, 4.0]], np.float32)], {"axis": 1, "reduction": "min"}, None),
    ("scatter_elements", "sym", [rnd(5, 3), np.array([[4, -5, 0], [4, 1, -1]], np.int64), rnd(2, 3)],
     {"reduction": "add"}, {0: {0: _N}}),
    # scatter_nd: every reduction, duplicates, depths, negatives
    *[("scatter_nd", f"dup-slices-{r}", [rnd(4, 3, 2), np.array([[1, 0], [-3, -3], [3, 2], [1, 0]], np.int64),
                                         rnd(4, 2)], {"reduction": r}, None)
      for r in ("none", "add", "mul", "max", "min")],
    ("scatter_nd", "depth1-rows", [rnd(4, 3), np.array([[-1], [0], [3]], np.int32), rnd(3, 3)], {}, None),
    ("scatter_nd", "full-depth-int", [ints(3, 4, lo=-9, hi=9, dtype="int32"),
                                      np.array([[[0, -1], [2, 1]], [[0, 3], [0, -1]]], np.int64),
                                      ints(2, 2, lo=-9, hi=9, dtype="int32")], {"reduction": "add"}, None),
    ("scatter_nd", "u8-none", [ints(2, 3, lo=0, hi=255, dtype="uint8"), np.array([[1], [1]], np.int64),
                               ints(2, 3, lo=0, hi=255, dtype="uint8")], {}, None),
    ("scatter_nd", "sym", [rnd(6, 2), np.array([[-1], [0], [-1]], np.int64), rnd(3, 2)], {}, {0: {0: _N}}),
]


@pytest.mark.parametrize(("op", "xs", "attrs", "sym"), [c[0:1] + c[2:] for c in CASES_HERE],
                         ids=[f"{c[0]}-{c[1]}" for c in CASES_HERE])
def test_lowering(op: str, xs: list[np.ndarray], attrs: dict, sym: dict | None) -> None:
    check(op, xs, attrs, sym)


_FIRST = {c[0]: c for c in reversed(CASES_HERE)}


@pytest.mark.parametrize("op", sorted(_FIRST))
def test_inputs_computed_in_the_same_function(op: str) -> None:
    _, _, xs, attrs, sym = _FIRST[op]
    check(op, xs, attrs, sym, computed_inputs=True)


def test_every_lowering_has_own_cases() -> None:
    assert {c[0] for c in CASES_HERE} == set(LOWERINGS)


# -- semantics beyond what eval allows -------------------------------------------------------


def test_cast_float_to_unsigned_wraps_like_interp() -> None:
    """Out of int32 range, NumPy's own float -> unsigned cast is platform garbage; the
    kernel follows the interpreter's ``_to_unsigned`` (mod 2**width, non-finite -> 0)."""
    x = np.array([1e10, -1e10, 3.5e19, -3e19, 2.0**70, np.nan, np.inf, -np.inf, -1.5], np.float64)
    for to in ("u8", "u16", "u32", "u64"):
        got = run_lowered("cast", [x], {"to": to})[0]
        np.testing.assert_array_equal(got, _to_unsigned(x, DTYPES[to]), err_msg=to)


_BIG = np.array([10**12, -10**12, 5], np.int64)  # wrapped and clamped: rows 3, 0, 3
_D43 = rnd(4, 3)
_GATHERS_OOB: dict[str, tuple[list[np.ndarray], np.ndarray]] = {
    "gather": ([_D43, _BIG], _D43[[3, 0, 3]]),
    "embedding": ([_D43, _BIG], _D43[[3, 0, 3]]),
    "gather_elements": ([_D43, _BIG.reshape(3, 1)], _D43[[3, 0, 3], 0].reshape(3, 1)),
    "gather_nd": ([_D43, np.array([[10**12, -10**12]], np.int64)], _D43[[3], [0]]),
}


@pytest.mark.parametrize("op", sorted(_GATHERS_OOB))
def test_out_of_range_gathers_stay_in_bounds(op: str) -> None:
    """A bad index is a user error (eval raises); the kernel clamps instead of crashing."""
    xs, want = _GATHERS_OOB[op]
    np.testing.assert_array_equal(run_lowered(op, xs, {})[0], want)


def test_out_of_range_scatters_stay_in_bounds() -> None:
    upd = np.full((1, 3), 9.0, np.float32)
    got = run_lowered("scatter_elements", [_D43, _BIG.reshape(1, 3), upd], {})[0]
    want = _D43.copy()
    want[3, 0] = want[0, 1] = want[3, 2] = 9.0
    np.testing.assert_array_equal(got, want)
    got = run_lowered("scatter_nd", [_D43, np.array([[10**12, -10**12]], np.int64), upd[0, :1]], {})[0]
    want = _D43.copy()
    want[3, 0] = 9.0
    np.testing.assert_array_equal(got, want)
