"""`tensoropt compile` / `tensoropt run` and the artifact contract.

One artifact of the bundled attention example (symbolic ``seq``) is built
per module; it must run at several sizes, load in a fresh process, and turn
every kind of damage into one clear line with exit 2.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run

import tensoropt
from tensoropt.api import write_npz
from tensoropt.demo import EXAMPLES

EXAMPLE = EXAMPLES / "attention.top"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    from tensoropt.cli import main

    out = tmp_path_factory.mktemp("art") / "attention.tvm"
    assert main(["compile", str(EXAMPLE), "-o", str(out), "--json"]) == 0
    return out


def test_compile_writes_a_self_describing_artifact(artifact: Path) -> None:
    assert sorted(p.name for p in artifact.iterdir()) == ["manifest.json", "model.so", "weights.npz"]
    m = json.loads((artifact / "manifest.json").read_text())
    assert m["format"] == "tensoropt-artifact" and m["version"] == 1
    assert m["inputs"] == [{"name": "x", "dtype": "f32", "shape": ["seq", 32]}]
    assert m["outputs"][0]["shape"][0] == "seq"
    assert m["target"]["name"] == "llvm" and m["target"]["tvm"]["kind"] == "llvm"
    assert m["versions"]["tvm"].startswith("0.27")
    assert len(m["source"]["sha256"]) == 64 and m["source"]["path"].endswith("attention.top")
    assert m["kernels"] and all(isinstance(r, str) for r in m["kernels"].values())
    # weights are plain .npz arrays (no pickles)
    with np.load(artifact / "weights.npz", allow_pickle=False) as npz:
        assert set(npz.files) == set(m["weights"])


@pytest.mark.parametrize("seq", [1, 5, 17])
def test_one_compile_runs_at_several_sizes(artifact: Path, seq: int) -> None:
    g = tensoropt.load(EXAMPLE)
    model = tensoropt.load(artifact)
    x = np.random.default_rng(seq).standard_normal((seq, 32)).astype(np.float32)
    want = tensoropt.evaluate(g, {"x": x})
    got = model(x)
    np.testing.assert_allclose(got, want[g.outputs[0]], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model(x=x), got)


def test_run_command_writes_outputs(artifact: Path, tmp_path: Path, capsys) -> None:
    x = np.ones((3, 32), np.float32)
    write_npz(tmp_path / "in.npz", {"x": x})
    code, out, err = run(capsys, "run", str(artifact), "--inputs", str(tmp_path / "in.npz"),
                         "-o", str(tmp_path / "out.npz"), "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["outputs"][0]["shape"] == [3, 16]
    with np.load(tmp_path / "out.npz") as npz:
        want = tensoropt.evaluate(tensoropt.load(EXAMPLE), {"x": x})
        np.testing.assert_allclose(npz[r["outputs"][0]["name"]], list(want.values())[0], rtol=1e-4, atol=1e-5)


def test_artifact_loads_in_a_fresh_process(artifact: Path) -> None:
    code = ("import numpy as np, tensoropt; m = tensoropt.load(%r); "
            "y = m(np.ones((4, 32), np.float32)); print(y.shape, float(y.sum()))" % str(artifact))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    want = tensoropt.evaluate(tensoropt.load(EXAMPLE), {"x": np.ones((4, 32), np.float32)})
    shape, total = r.stdout.split(")")
    assert shape == "(4, 16"
    assert abs(float(total) - float(list(want.values())[0].sum())) < 1e-3 * max(1.0, abs(float(total)))


def _damaged(artifact: Path, tmp_path: Path, how: str) -> Path:
    d = tmp_path / "bad.tvm"
    shutil.copytree(artifact, d)
    if how == "no-manifest":
        (d / "manifest.json").unlink()
    elif how == "bad-json":
        (d / "manifest.json").write_text("{not json")
    elif how == "truncated-lib":
        lib = d / "model.so"
        lib.write_bytes(lib.read_bytes()[:1000])
    elif how == "no-weights":
        (d / "weights.npz").unlink()
    elif how == "wrong-version":
        m = json.loads((d / "manifest.json").read_text())
        m["version"] = 99
        (d / "manifest.json").write_text(json.dumps(m))
    return d


@pytest.mark.parametrize("how,needle", [
    ("no-manifest", "manifest.json: missing"),
    ("bad-json", "not valid JSON"),
    ("truncated-lib", "model.so: corrupt"),
    ("no-weights", "weights.npz: missing"),
    ("wrong-version", "version 99"),
])
def test_damaged_artifact_is_one_line(artifact: Path, tmp_path: Path, capsys, how: str, needle: str) -> None:
    code, _, err = run(capsys, "run", str(_damaged(artifact, tmp_path, how)))
    assert_one_line_error(code, err, needle)


def test_missing_artifact_and_bad_inputs(artifact: Path, tmp_path: Path, capsys) -> None:
    code, _, err = run(capsys, "run", str(tmp_path / "nope"))
    assert_one_line_error(code, err, "no such artifact directory")
    write_npz(tmp_path / "wrong.npz", {"y": np.ones((3, 32), np.float32)})
    code, _, err = run(capsys, "run", str(artifact), "--inputs", str(tmp_path / "wrong.npz"))
    assert_one_line_error(code, err, "unknown input %y")
    write_npz(tmp_path / "shape.npz", {"x": np.ones((3, 31), np.float32)})
    code, _, err = run(capsys, "run", str(artifact), "--inputs", str(tmp_path / "shape.npz"))
    assert_one_line_error(code, err, "input %x: dim 1 expected 32")


def test_compile_refuses_to_overwrite_a_non_artifact(tmp_path: Path, capsys) -> None:
    d = tmp_path / "important"
    d.mkdir()
    (d / "notes.txt").write_text("keep me")
    code, _, err = run(capsys, "compile", str(EXAMPLE), "-o", str(d))
    assert_one_line_error(code, err, "not overwriting")
    assert (d / "notes.txt").read_text() == "keep me"


def test_cuda_build_needs_no_gpu(tmp_path: Path, capsys) -> None:
    import tvm

    out = tmp_path / "mlp_cuda.tvm"
    code, _, err = run(capsys, "compile", str(EXAMPLES / "mlp.top"), "-o", str(out), "--target", "cuda", "--json")
    assert code == 0, err
    m = json.loads((out / "manifest.json").read_text())
    assert m["target"]["name"] == "cuda" and set(m["kernels"].values()) == {"dlight"}
    if not tvm.cuda(0).exist:  # runs where a GPU is visible; here it must say why not, on one line
        code, _, err = run(capsys, "run", str(out))
        assert_one_line_error(code, err, "no CUDA GPU")
