"""Differential test: random well-typed graphs, compiled, against the interpreter.

The codegen tests elsewhere compile each registry op alone; users' models
combine them. Here graphs from the project's own generator
(``tensoropt.fuzz.typed``: ~24 nodes of elementwise chains, reductions,
softmax/layernorm, matmul/gemm/conv2d/pools, reshapes, slices, concats and
``expr`` nodes with shifted, strided and out-of-bounds reads; many with a
symbolic ``batch``) are compiled as they come and after the cleanup
pipeline (which fuses elementwise chains into ``expr`` nodes), run, and
compared with the reference interpreter. A graph with a symbolic batch is
compiled once and run at two batch sizes.

Each wrong answer this has found is fixed at its root; see
``tensoropt/codegen/index_safety.py`` and ``schedule_gemm.reverse_inline``.
The default suite runs a few hundred compiles; ``-m slow`` runs thousands.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tensoropt.api import evaluate, optimize
from tensoropt.compiler import compile as compile_model
from tensoropt.fuzz.typed import BATCH, random_typed_graph, typed_inputs

PIPELINE = "fold-constants,cse,dce,fuse-elementwise"
#: seeds per test case (one compile each, twice: as generated and after PIPELINE)
CHUNK = 15
FAST_CHUNKS = 10  # 150 graphs, 300 compiles, about 1.5 minutes on 2 cores
SLOW_CHUNKS = 200  # 3,000 graphs
FIRST_SEED = 10_000  # away from the seeds the campaigns that found the bugs used


def _symbolic(graph) -> bool:
    return any(BATCH in v.type.shape for v in graph.inputs)


def _check(seed: int, pipeline: str | None) -> list[str]:
    """What is wrong with graph ``seed`` compiled (after ``pipeline``): one line each."""
    graph = random_typed_graph(seed, max_nodes=24)
    if pipeline:
        graph, _ = optimize(graph, pipeline)
    where = f"seed {seed}{' after ' + pipeline if pipeline else ''}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fallbacks are checked below, by kind
        model = compile_model(graph)
    problems = [f"{where}: kernel {k} left unscheduled: {rule}"
                for k, rule in model.manifest["kernels"].items() if rule.startswith("none (")]
    for batch in ((None, 3) if _symbolic(graph) else (None,)):
        inputs = typed_inputs(graph, seed, batch=batch)
        ref = evaluate(graph, inputs)
        got = model.run(inputs)
        for name, want in ref.items():
            have = np.asarray(got[name])
            want = np.asarray(want)
            if have.shape != want.shape:
                problems.append(f"{where}: output {name} has shape {have.shape}, expected {want.shape}")
            elif not np.allclose(have, want, rtol=1e-3, atol=1e-3, equal_nan=True):
                err = float(np.nanmax(np.abs(have.astype(np.float64) - want.astype(np.float64))))
                problems.append(f"{where}: output {name} off by {err:.3g} (batch {batch})")
    return problems


def _run_chunk(chunk: int) -> None:
    problems: list[str] = []
    for seed in range(FIRST_SEED + chunk * CHUNK, FIRST_SEED + (chunk + 1) * CHUNK):
        for pipeline in (None, PIPELINE):
            problems += _check(seed, pipeline)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("chunk", range(FAST_CHUNKS))
def test_random_graphs_compile_to_the_interpreters_answer(chunk: int) -> None:
    _run_chunk(chunk)


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(FAST_CHUNKS, SLOW_CHUNKS))
def test_many_random_graphs_compile_to_the_interpreters_answer(chunk: int) -> None:
    _run_chunk(chunk)


# -- regressions: the graphs that found each bug ------------------------------


@pytest.mark.parametrize(("seed", "pipeline"), [
    (1477, None),  # reshape + reversed read: TVM's FlattenBuffer folded (161 - i) // 27 ... to 135 - i
    (1645, PIPELINE),  # concat with a materialized piece: a Select lost its clamp, LLVM exploited the OOB read
    (2127, PIPELINE),  # padded expr conv over a materialized scope: same
    (1079, None),  # NaN-aware max as a Let, duplicated by inlining: the vectorizer rejected the module
    (1140, None),  # same
    (1171, PIPELINE),  # conv + bias + greater/where epilogue read twice: TVM's reverse_compute_inline dropped a buffer
])
def test_graph_that_found_a_bug(seed: int, pipeline: str | None) -> None:
    problems = _check(seed, pipeline)
    assert not problems, "\n".join(problems)
