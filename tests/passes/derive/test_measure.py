"""passes/derive/measure.py: measured candidate cost, its on-disk cache, folding of weight-only nodes.

Compilations are the slow part (the first in a process pays TVM start-up, ~1-2 s):
only three tests compile, each once.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tensoropt.codegen.build as codegen_build
from tensoropt.builder import GraphBuilder
from tensoropt.errors import TensoroptError
from tensoropt.ir.graph import Graph
from tensoropt.passes.derive.measure import (
    CostCache,
    CostCacheWarning,
    Measurement,
    MeasureError,
    cache_key,
    default_cache,
    measure_graph,
    prepare_for_measurement,
)

#: Fast timing: these tests check plumbing, not the quality of the numbers.
FAST: dict[str, Any] = {"repeat": 3, "min_seconds": 0.005}


def matmul_graph(name: str = "mm") -> Graph:
    b = GraphBuilder(name)
    x = b.input("x", "f32", (8, 16))
    w = b.const("w", np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32))
    return b.build(b.op("matmul", x, w))


def transposed_weight_graph(seed: int = 0) -> Graph:
    """matmul(x, transpose(w)): the transpose reads only a weight."""
    b = GraphBuilder("tw")
    x = b.input("x", "f32", (8, 16))
    w = b.const("w", np.random.default_rng(seed).standard_normal((32, 16)).astype(np.float32))
    wt = b.op("transpose", w, perm=[1, 0], name="wt")
    return b.build(b.op("matmul", x, wt, name="y"))


def pretransposed_graph() -> Graph:
    """What :func:`transposed_weight_graph` folds to, written directly."""
    b = GraphBuilder("tw")
    x = b.input("x", "f32", (8, 16))
    wt = b.const("wt", np.zeros((16, 32), np.float32))
    return b.build(b.op("matmul", x, wt, name="y"))


@pytest.fixture
def no_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any compilation from here on fails the test."""
    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("compiled although the measurement should have come from the cache")

    monkeypatch.setattr(codegen_build, "build", refuse)


def test_measure_then_cached_without_compiling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = CostCache(tmp_path / "costs.jsonl")
    m = measure_graph(matmul_graph(), cache=cache, **FAST)
    assert not m.cached
    assert len(m.runs_s) == FAST["repeat"] and all(r > 0 and math.isfinite(r) for r in m.runs_s)
    assert 0 < m.median_s < 1 and math.isfinite(m.median_s) and m.compile_s > 0

    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("compiled on a cache hit")

    monkeypatch.setattr(codegen_build, "build", refuse)
    again = measure_graph(matmul_graph(), cache=cache, **FAST)
    assert again == Measurement(m.median_s, m.runs_s, m.compile_s, cached=True)

    # Persisted: a fresh cache object on the same file answers too, and a graph
    # with other weight values (same structure) and another name hits the same record.
    fresh = CostCache(tmp_path / "costs.jsonl")
    other = matmul_graph("renamed")
    other = other.replace(weights={"w": np.ones((16, 32), np.float32)})
    assert measure_graph(other, cache=fresh, **FAST).median_s == m.median_s
    lines = (tmp_path / "costs.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["key"] == cache_key(prepare_for_measurement(matmul_graph()))


def _record(key: str, median: float) -> str:
    return json.dumps({"key": key, "median_s": median, "runs_s": [median, median], "compile_s": 1.0})


def test_corrupt_lines_skipped_with_one_warning(tmp_path: Path) -> None:
    path = tmp_path / "costs.jsonl"
    path.write_bytes("\n".join([
        _record("a", 1e-3),
        "{not json",
        json.dumps({"key": "b", "median_s": "fast"}),  # valid JSON, not a record
        _record("b", 2e-3),
        _record("a", 5e-4),  # later record for the same key wins
        '{"key": "c", "median_s": 0.1, "runs_',  # a crash mid-append: partial last line
    ]).encode())
    cache = CostCache(path)
    with pytest.warns(CostCacheWarning) as caught:
        assert cache.get("a") == Measurement(5e-4, (5e-4, 5e-4), 1.0, cached=True)
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert f"{path}:2:" in msg and "2 more" in msg
    assert cache.corrupt_lines == 3
    assert cache.get("b") is not None and cache.get("c") is None and len(cache) == 2

    # Appending after the partial line starts a fresh line: the new record reads back.
    cache.put("d", Measurement(1e-4, (1e-4,), 0.5, cached=False))
    with pytest.warns(CostCacheWarning):
        reread = CostCache(path)
        assert reread.get("d") == Measurement(1e-4, (1e-4,), 0.5, cached=True)
    assert reread.corrupt_lines == 3 and len(reread) == 3


def test_clean_file_reads_without_warning(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "costs.jsonl"
    cache = CostCache(path)
    cache.put("k", Measurement(2e-3, (2e-3, 3e-3, 1e-3), 0.7, cached=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reread = CostCache(path)
        assert reread.get("k") == Measurement(2e-3, (2e-3, 3e-3, 1e-3), 0.7, cached=True)
        assert reread.corrupt_lines == 0


def test_default_cache_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENSOROPT_CACHE_DIR", str(tmp_path))
    c = default_cache()
    assert c is not None and c.path == tmp_path / "derive-costs.jsonl" and default_cache() is c
    monkeypatch.setenv("TENSOROPT_CACHE_DIR", "off")
    assert default_cache() is None
    monkeypatch.delenv("TENSOROPT_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    c = default_cache()
    assert c is not None and c.path == tmp_path / "home" / ".cache" / "tensoropt" / "derive-costs.jsonl"


def test_cache_disabled_by_env_always_compiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # where the default cache would otherwise go
    monkeypatch.setenv("TENSOROPT_CACHE_DIR", "off")
    m = measure_graph(matmul_graph(), **FAST)
    assert not m.cached and m.median_s > 0

    calls: list[int] = []

    def counting(*a: object, **k: object) -> None:
        calls.append(1)
        raise RuntimeError("second compile")

    monkeypatch.setattr(codegen_build, "build", counting)
    with pytest.raises(RuntimeError, match="second compile"):
        measure_graph(matmul_graph(), **FAST)  # nothing was cached: it compiles again
    assert calls == [1]
    assert not any(tmp_path.rglob("*.jsonl"))


def test_symbolic_input_dims_are_refused(tmp_path: Path, no_compile: None) -> None:
    b = GraphBuilder("dyn")
    x = b.input("x", "f32", ("batch", 16))
    w = b.const("w", np.zeros((16, 4), np.float32))
    g = b.build(b.op("matmul", x, w))
    with pytest.raises(MeasureError, match=r"input %x has symbolic dims .*batch") as e:
        measure_graph(g, cache=CostCache(tmp_path / "c.jsonl"))
    assert isinstance(e.value, TensoroptError)


def test_weight_only_layout_node_is_folded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = transposed_weight_graph()
    prepared = prepare_for_measurement(g)
    assert [n.op for n in prepared.nodes] == ["matmul"]
    np.testing.assert_array_equal(prepared.weights["wt"], g.weights["w"].T)
    assert cache_key(prepared) == cache_key(prepare_for_measurement(pretransposed_graph()))

    # What reaches the code generator is the folded graph: no kernel for the transpose.
    built: list[Graph] = []
    real_build = codegen_build.build

    def spy(graph: Graph, *a: Any, **k: Any) -> Any:
        built.append(graph)
        return real_build(graph, *a, **k)

    monkeypatch.setattr(codegen_build, "build", spy)
    cache = CostCache(tmp_path / "c.jsonl")
    m = measure_graph(g, cache=cache, **FAST)
    assert [[n.op for n in b.nodes] for b in built] == [["matmul"]]

    # The pre-transposed program is the same program: a cache hit, no compile.
    assert measure_graph(pretransposed_graph(), cache=cache, **FAST) == Measurement(
        m.median_s, m.runs_s, m.compile_s, cached=True)
    assert len(built) == 1


def test_constants_without_arrays_still_fold(no_compile: None) -> None:
    g = transposed_weight_graph()
    bare = g.replace(weights={})  # parsed without its .npz
    assert [n.op for n in prepare_for_measurement(bare).nodes] == ["matmul"]


def test_key_is_structural() -> None:
    g = matmul_graph()
    same = g.replace(weights={"w": np.full((16, 32), 3.0, np.float32)})
    assert cache_key(g) == cache_key(same)
    assert cache_key(g) != cache_key(g, "cuda")
    b = GraphBuilder("mm")
    x = b.input("x", "f32", (8, 16))
    w = b.const("w", np.zeros((16, 64), np.float32))
    assert cache_key(g) != cache_key(b.build(b.op("matmul", x, w)))


def test_bad_options(no_compile: None) -> None:
    with pytest.raises(MeasureError, match="repeat"):
        measure_graph(matmul_graph(), repeat=0, cache=None)
    with pytest.raises(MeasureError, match="min_seconds"):
        measure_graph(matmul_graph(), min_seconds=float("nan"), cache=None)


def test_unwritable_cache_warns_once_and_keeps_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = CostCache(blocker / "costs.jsonl")  # parent is a file: every write fails
    m = Measurement(1e-3, (1e-3,), 1.0, cached=False)
    with pytest.warns(CostCacheWarning, match="cannot write") as caught:
        cache.put("a", m)
        cache.put("b", m)
    assert len(caught) == 1
    assert cache.get("a") is not None and cache.get("b") is not None
