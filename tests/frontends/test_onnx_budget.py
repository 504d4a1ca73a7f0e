"""Bounded work on untrusted ONNX models: import-time folding has a size budget.

A 166-byte model can declare a ``ConstantOfShape`` of 100000x100000 floats
(37.3 GiB). Import must not allocate it (it becomes a run-time ``expand``),
``tensoropt check`` must pass without allocating it, and ``tensoropt eval``
must refuse it in one line naming the node and the size, exit 2.

The CLI tests run in a subprocess under a 3 GiB address-space limit, so a
regression fails the test (MemoryError, exit 1) instead of exhausting the
machine. In-process tests use small explicit budgets, or sizes just over the
default budget that would be harmless to allocate.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tensoropt.errors import UnsupportedError
from tensoropt.frontends.onnx import from_onnx
from tensoropt.frontends.onnx_context import FOLD_MAX_BYTES, FoldBudget
from tensoropt.interp import run_graph

#: The address-space limit of the CLI subprocesses: above what Python, NumPy,
#: SciPy and onnx map at start (about 1-1.5 GiB), far below 37 GiB.
RLIMIT_BYTES = 3 << 30
N = 100_000


def _model(nodes: list, inputs: list, outputs: list, inits: Sequence[onnx.TensorProto] = (),
           opset: int = 17) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "m", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(m, full_check=True)
    return m


def _vi(name: str, shape: Sequence[int | None], dtype: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def _ints(name: str, values: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, np.int64), name)


def reproducer(x_shape: list[int], dims: tuple[int, int] = (N, N), value: float = 1.0) -> onnx.ModelProto:
    """ConstantOfShape (shape from an int64 initializer) -> Add with the input ``x``."""
    c = helper.make_node("ConstantOfShape", ["s"], ["c"], name="c",
                         value=helper.make_tensor("v", TensorProto.FLOAT, [1], [value]))
    add = helper.make_node("Add", ["c", "x"], ["y"], name="a")
    return _model([c, add], [_vi("x", x_shape)], [_vi("y", list(dims))], [_ints("s", list(dims))])


def test_the_reproducer_is_tiny_and_valid() -> None:
    for x_shape in ([1], [N, N]):
        assert len(reproducer(x_shape).SerializeToString()) < 200  # 157 and 165 bytes


def test_over_budget_constant_of_shape_stays_a_run_time_op() -> None:
    g = from_onnx(reproducer([N, N]), where="m.onnx")
    (expand,) = [n for n in g.nodes if n.op == "expand"]
    assert expand.output_names == ("c",) and expand.attrs["shape"] == (N, N)
    assert sum(w.nbytes for w in g.weights.values()) < 1024  # only the scalar and nothing of N*N


def test_run_time_constant_of_shape_computes_the_same_values() -> None:
    dims = (3, 5)
    m = reproducer([5], dims, value=2.5)
    folded = from_onnx(m)
    tight = from_onnx(m, fold_budget=FoldBudget(max_bytes=16))
    assert not any(n.op == "expand" for n in folded.nodes)
    assert any(n.op == "expand" for n in tight.nodes)
    x = np.arange(5, dtype=np.float32)
    want = np.full(dims, 2.5, np.float32) + x
    for g in (folded, tight):
        np.testing.assert_array_equal(run_graph(g, {"x": x})["y"], want)


def test_default_budget_is_per_value() -> None:
    """Just over FOLD_MAX_BYTES (harmless to allocate, should a regression do it)."""
    side = int((FOLD_MAX_BYTES // 4) ** 0.5) + 1
    assert side * side * 4 > FOLD_MAX_BYTES
    g = from_onnx(reproducer([1], (side, side)))
    assert any(n.op == "expand" for n in g.nodes)
    g = from_onnx(reproducer([1], (side - 1, side - 1)))
    assert not any(n.op == "expand" for n in g.nodes)


def test_total_budget_keeps_later_values_run_time() -> None:
    nodes, outs, inits = [], [], []
    for k in range(4):
        inits.append(_ints(f"s{k}", [4, 4]))  # 64 bytes each
        nodes.append(helper.make_node("ConstantOfShape", [f"s{k}"], [f"c{k}"], name=f"c{k}"))
        nodes.append(helper.make_node("Add", [f"c{k}", "x"], [f"y{k}"]))
        outs.append(_vi(f"y{k}", [4, 4]))
    m = _model(nodes, [_vi("x", [4])], outs, inits)
    budget = FoldBudget(max_bytes=64, total_bytes=128)
    g = from_onnx(m, fold_budget=budget)
    assert [n.output_names[0] for n in g.nodes if n.op == "expand"] == ["c2", "c3"]
    assert budget.used == 128
    outs_ = run_graph(g, {"x": np.ones(4, np.float32)})
    for k in range(4):
        np.testing.assert_array_equal(outs_[f"y{k}"], np.ones((4, 4), np.float32))


def test_generic_folds_are_sized_before_they_run() -> None:
    """Expand, Tile and a broadcasting Add of constants: ONNX's shape inference
    sizes them first; over the budget they become run-time ops, same values."""
    a = numpy_helper.from_array(np.arange(3, dtype=np.float32).reshape(3, 1), "a")
    b = numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 4), "b")
    nodes = [helper.make_node("Expand", ["a", "es"], ["e"], name="e"),
             helper.make_node("Tile", ["a", "reps"], ["t"], name="t"),
             helper.make_node("Add", ["a", "b"], ["s"], name="s")]
    nodes += [helper.make_node("Add", [v, "x"], [f"{v}_out"]) for v in ("e", "t", "s")]
    m = _model(nodes, [_vi("x", [1])],
               [_vi("e_out", [3, 4]), _vi("t_out", [6, 2]), _vi("s_out", [3, 4])],
               [a, b, _ints("es", [3, 4]), _ints("reps", [2, 2])])
    x = np.zeros(1, np.float32)
    want = {"e_out": np.broadcast_to(np.arange(3.0).reshape(3, 1), (3, 4)),
            "t_out": np.tile(np.arange(3.0).reshape(3, 1), (2, 2)),
            "s_out": np.arange(3.0).reshape(3, 1) + np.arange(4.0)}
    tight = from_onnx(m, fold_budget=FoldBudget(max_bytes=24))
    assert {n.output_names[0] for n in tight.nodes} >= {"e", "t", "s"}  # all run-time
    folded = from_onnx(m)
    assert not {n.output_names[0] for n in folded.nodes} & {"e", "t", "s"}
    for g in (tight, folded):
        got = run_graph(g, {"x": x})
        for k, v in want.items():
            np.testing.assert_array_equal(got[k], v.astype(np.float32))


def test_values_no_larger_than_their_inputs_fold_up_to_the_total() -> None:
    """A transposed weight is no amplification: it folds past the per-value
    budget. Many copies of it are, and the total stops them."""
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4), "w")  # 48 bytes
    nodes = [helper.make_node("Transpose", ["w"], [f"t{k}"], name=f"t{k}") for k in range(3)]
    nodes += [helper.make_node("Add", [f"t{k}", "x"], [f"y{k}"]) for k in range(3)]
    m = _model(nodes, [_vi("x", [4, 3])], [_vi(f"y{k}", [4, 3]) for k in range(3)], [w])
    g = from_onnx(m, fold_budget=FoldBudget(max_bytes=16, total_bytes=100))
    assert [n.output_names[0] for n in g.nodes if n.op == "transpose"] == ["t2"]  # 2 x 48 bytes fit
    x = np.zeros((4, 3), np.float32)
    for k, y in run_graph(g, {"x": x}).items():
        np.testing.assert_array_equal(y, np.arange(12, dtype=np.float32).reshape(3, 4).T, err_msg=k)
    assert not any(n.op == "transpose" for n in from_onnx(m).nodes)  # the default total: 2x the weights, or 1 GiB


def test_over_budget_range_fails_in_one_line_naming_node_and_size() -> None:
    """Range has no run-time form: over the budget, the import says so."""
    r = helper.make_node("Range", ["lo", "hi", "step"], ["r"], name="r")
    cast = helper.make_node("Cast", ["r"], ["y"], to=TensorProto.FLOAT)
    add = helper.make_node("Add", ["y", "x"], ["z"])
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("lo", 0), ("hi", 10**12), ("step", 1))]
    m = _model([r, cast, add], [_vi("x", [1])], [_vi("z", [10**12])], inits)
    with pytest.raises(UnsupportedError) as e:
        from_onnx(m, where="m.onnx")
    msg = str(e.value)
    assert "\n" not in msg
    for needle in ("m.onnx: Range node 'r'", "i64[1000000000000]", "7.3 TiB", "budget"):
        assert needle in msg, (needle, msg)


def test_eyelike_and_dropout_mask_over_budget_are_run_time() -> None:
    eye = helper.make_node("EyeLike", ["x"], ["i"], name="i", k=1)
    drop = helper.make_node("Dropout", ["x"], ["d", "mask"], name="d")
    m = _model([eye, drop], [_vi("x", [3, 4])],
               [_vi("i", [3, 4]), _vi("d", [3, 4]), _vi("mask", [3, 4], TensorProto.BOOL)])
    x = np.ones((3, 4), np.float32)
    for budget in (FoldBudget(), FoldBudget(max_bytes=8)):
        g = from_onnx(m, fold_budget=budget)
        assert any(n.op == "expand" for n in g.nodes) == (budget.max_bytes == 8)
        out = run_graph(g, {"x": x})
        np.testing.assert_array_equal(out["i"], np.eye(3, 4, k=1, dtype=np.float32))
        np.testing.assert_array_equal(out["mask"], np.ones((3, 4), bool))


def test_data_dependent_sizes_still_fold() -> None:
    """NonZero's output length is unknown to shape inference: bounded by its input."""
    a = numpy_helper.from_array(np.array([[0, 1], [2, 0]], np.float32), "a")
    nz = helper.make_node("NonZero", ["a"], ["n"], name="n")
    add = helper.make_node("Add", ["n", "x"], ["y"])
    m = _model([nz, add], [_vi("x", [1], TensorProto.INT64)], [_vi("y", [2, None], TensorProto.INT64)], [a])
    g = from_onnx(m)
    assert [n.op for n in g.nodes] == ["add"]
    got = run_graph(g, {"x": np.zeros(1, np.int64)})["y"]
    np.testing.assert_array_equal(got, np.array([[0, 1], [1, 0]]))


# -- the CLI, in a subprocess under an address-space limit ---------------------------------


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (RLIMIT_BYTES, RLIMIT_BYTES))


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    # One BLAS/OpenMP thread: thread stacks and buffers count against
    # RLIMIT_AS, so a many-core host must not change the outcome.
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("TENSOROPT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "tensoropt", *argv], capture_output=True, text=True,
                          env=env, preexec_fn=_limit_memory, timeout=120)


@pytest.fixture(scope="module")
def repro_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("budget")
    files = {"broadcast": d / "m.onnx", "full": d / "full.onnx"}
    onnx.save(reproducer([1]), files["broadcast"])
    onnx.save(reproducer([N, N]), files["full"])
    return files


@pytest.mark.parametrize("which", ["broadcast", "full"])
def test_cli_check_passes_without_allocating(repro_files: dict[str, Path], which: str) -> None:
    r = _cli("check", str(repro_files[which]))
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n") == 1 and ": ok: graph" in r.stdout and "f32[100000, 100000]" in r.stdout


def test_cli_eval_refuses_in_one_line_naming_node_and_size(repro_files: dict[str, Path]) -> None:
    r = _cli("eval", str(repro_files["broadcast"]), "--random")
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr and "MemoryError" not in r.stderr, r.stderr
    for needle in ("tensoropt: error: ", "node %c", "f32[100000, 100000]", "37.3 GiB", "evaluation budget"):
        assert needle in lines[0], (needle, lines[0])
