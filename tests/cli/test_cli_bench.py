"""`tensoropt bench`: the report's schema, a peer that agrees, torch "not
applicable" for a .top model, the written JSON and PNG, and one-line errors
for bad options (before anything is compiled)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, run

from tensoropt.cli import main

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "mlp.top"


@pytest.fixture(scope="module")
def mlp_bench(tmp_path_factory) -> dict:
    """One `tensoropt bench --json` run on the MLP (compiling costs seconds: shared by the tests)."""
    d = tmp_path_factory.mktemp("bench")
    out, png = d / "mlp.json", d / "mlp.png"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["bench", str(MLP), "--against", "onnxruntime,torch", "--repeat", "3", "--warmup", "1",
                     "--bind", "batch=8", "-o", str(out), "--plot", str(png), "--json"])
    assert code == 0, stderr.getvalue()
    return {"stdout": stdout.getvalue(), "stderr": stderr.getvalue(), "json": out, "png": png}


def test_bench_json_schema(mlp_bench: dict) -> None:
    printed = json.loads(mlp_bench["stdout"])
    written = json.loads(mlp_bench["json"].read_text())
    assert printed == written
    assert written["model"] == "mlp"
    assert set(written["machine"]) >= {"cpu", "cores", "python", "tvm", "onnxruntime", "torch"}
    assert written["inputs"] == {"x": {"shape": [8, 64], "dtype": "float32"}}
    assert [r["side"] for r in written["results"]] == ["tensoropt", "onnxruntime", "torch"]
    for r in written["results"]:
        assert set(r) >= {"side", "median_ms", "min_ms", "max_ms", "runs_ms", "ratio", "max_rel_diff", "error"}
    assert mlp_bench["stderr"] == ""  # --json: no progress


def test_bench_onnxruntime_agrees(mlp_bench: dict) -> None:
    results = {r["side"]: r for r in json.loads(mlp_bench["json"].read_text())["results"]}
    ours, ort = results["tensoropt"], results["onnxruntime"]
    for r in (ours, ort):
        assert r["status"] == "ok" and r["error"] is None
        assert len(r["runs_ms"]) == 3 and r["min_ms"] <= r["median_ms"] <= r["max_ms"]
    assert ours["ratio"] == 1.0 and ours["compile_s"] > 0
    assert ort["ratio"] == pytest.approx(ours["median_ms"] / ort["median_ms"])
    assert ort["max_rel_diff"] < 1e-3 and ort["agree"] is True


def test_bench_torch_not_applicable_for_top(mlp_bench: dict) -> None:
    torch_row = json.loads(mlp_bench["json"].read_text())["results"][2]
    assert torch_row["side"] == "torch" and torch_row["status"] == "not applicable"
    assert "not applicable" in torch_row["note"] and torch_row["median_ms"] is None and torch_row["ratio"] is None


def test_bench_png_written(mlp_bench: dict) -> None:
    data = mlp_bench["png"].read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_bench_unknown_peer(capsys, tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    code, _, err = run(capsys, "bench", str(MLP), "--against", "onnxruntime,tensorrt", "-o", str(out))
    assert_one_line_error(code, err, "'tensorrt'", "unknown peer", "onnxruntime, torch, tvm-relax")
    assert not out.exists()


@pytest.mark.parametrize("argv, needles", [
    (["-o", "x.txt"], ["x.txt", ".json"]),
    (["--plot", "x.jpg"], ["--plot", ".png"]),
    (["--repeat", "0"], ["--repeat"]),
    (["--bind", "nope=3"], ["nope", "batch"]),
    (["--random-weights"], ["--random-weights", "ONNX"]),
])
def test_bench_bad_options(capsys, tmp_path: Path, monkeypatch, argv: list[str], needles: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "bench", str(MLP), *argv)
    assert_one_line_error(code, err, *needles)
    assert list(tmp_path.iterdir()) == []


def test_random_weights_make_logits_differ() -> None:
    """The light models' constant weights give equal logits; random ones do not, and only weights change."""
    import onnx
    import onnxruntime as ort

    from tensoropt.bench import onnx_run_inputs, randomize_onnx_weights

    light = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_squeezenet.onnx"
    model = onnx.load(light)
    rnd = randomize_onnx_weights(model, seed=3)
    assert rnd.graph.node[-1].op_type != "Softmax" and model.graph.node[-1].op_type == "Softmax"
    assert not any(n.op_type == "ConstantOfShape" for n in rnd.graph.node)
    assert onnx_run_inputs(rnd) == onnx_run_inputs(model)
    onnx.checker.check_model(rnd)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    sess = ort.InferenceSession(rnd.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {onnx_run_inputs(rnd)[0]: x})[0]
    assert np.isfinite(logits).all() and logits.std() > 1e-3
    again = randomize_onnx_weights(model, seed=3)
    assert [t.raw_data for t in again.graph.initializer] == [t.raw_data for t in rnd.graph.initializer]


def test_bench_pt2_against_torch(capsys, tmp_path: Path) -> None:
    import torch

    class Small(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(32, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.fc(x)) * 2.0

    path = tmp_path / "small.pt2"
    torch.export.save(torch.export.export(Small().eval(), (torch.randn(4, 32),)), str(path))
    code, out, err = run(capsys, "bench", str(path), "--against", "torch", "--repeat", "2", "--warmup", "1", "--json")
    assert code == 0, err
    rows = {r["side"]: r for r in json.loads(out)["results"]}
    assert rows["torch"]["status"] == "ok" and rows["torch"]["agree"] is True
    assert rows["torch"]["ratio"] > 0 and len(rows["torch"]["runs_ms"]) == 2
