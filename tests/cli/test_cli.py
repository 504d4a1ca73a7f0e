"""The CLI contract: every command works on the examples, takes --json, and
turns every kind of bad input into one located line and exit code 2 with no
half-written output file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, run

from tensoropt.cli import main

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "examples"


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "syntax": "graph g(%x: f32[2]) {\n  %y: f32[2] = relu(%x\n  return %y\n}\n",
        "unknown_op": "graph g(%x: f32[2]) {\n  %y: f32[2] = frobnicate(%x)\n  return %y\n}\n",
        "shape": "graph g(%a: f32[2, 3], %b: f32[4, 5]) {\n  %y: f32[2, 5] = matmul(%a, %b)\n  return %y\n}\n",
        "undefined": "graph g(%x: f32[2]) {\n  %y: f32[2] = relu(%nope)\n  return %y\n}\n",
    }
    out = {}
    for k, text in files.items():
        p = tmp_path / f"{k}.top"
        p.write_text(text)
        out[k] = p
    (tmp_path / "binary.top").write_bytes(b"\xff\xfe\x00garbage")
    out["binary"] = tmp_path / "binary.top"
    return out


# -- happy paths --------------------------------------------------------------


@pytest.mark.parametrize("example", ["mlp.top", "conv_block.top", "attention.top"])
def test_check_examples(capsys, example: str) -> None:
    code, out, err = run(capsys, "check", str(EX / example))
    assert code == 0, err
    assert "ok" in out


def test_check_json(capsys) -> None:
    code, out, _ = run(capsys, "check", str(EX / "mlp.top"), "--json")
    assert code == 0
    d = json.loads(out)
    assert d["ok"] is True and d["inputs"] == {"x": "f32[batch, 64]"} and d["nodes"] == 6


def test_show_roundtrips_text(capsys) -> None:
    from tensoropt.ir.parser import parse_graph

    code, out, _ = run(capsys, "show", str(EX / "attention.top"))
    assert code == 0
    assert parse_graph(out) == parse_graph((EX / "attention.top").read_text())


def test_show_dot(capsys, tmp_path: Path) -> None:
    dot = tmp_path / "g.dot"
    code, _, err = run(capsys, "show", str(EX / "conv_block.top"), "--format", "dot", "-o", str(dot))
    assert code == 0, err
    text = dot.read_text()
    assert text.startswith('digraph "conv_block"') and "conv2d" in text and text.rstrip().endswith("}")


def test_eval_random_and_inputs(capsys, tmp_path: Path) -> None:
    out = tmp_path / "o.npz"
    code, _, err = run(capsys, "eval", str(EX / "attention.top"), "--random", "--bind", "seq=5", "-o", str(out))
    assert code == 0, err
    with np.load(out) as z:
        assert z["o"].shape == (5, 16)
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    code, stdout, err = run(capsys, "eval", str(EX / "mlp.top"), "--inputs", str(tmp_path / "in.npz"), "--json")
    assert code == 0, err
    d = json.loads(stdout)
    assert d["outputs"][0]["shape"] == [3, 10]


def test_opt_writes_graph_and_weights(capsys, tmp_path: Path) -> None:
    out = tmp_path / "opt.top"
    code, stdout, err = run(capsys, "opt", str(EX / "conv_block.top"), "-p", "fold-constants,cse,dce", "-o",
                            str(out), "--json")
    assert code == 0, err
    d = json.loads(stdout)
    assert [p["pass"] for p in d["passes"]] == ["fold-constants", "cse", "dce"]
    assert out.exists() and out.with_suffix(".npz").exists()
    code, _, err = run(capsys, "check", str(out))
    assert code == 0, err


def test_passes_and_ops_listing(capsys) -> None:
    code, out, _ = run(capsys, "passes", "--json")
    names = {p["name"] for p in json.loads(out)["passes"]}
    assert {"dce", "cse", "fold-constants", "fuse-elementwise"} <= names
    code, out, _ = run(capsys, "ops", "--json")
    assert code == 0 and "conv2d" in {o["name"] for o in json.loads(out)["ops"]}


@pytest.mark.parametrize("cmd", ["show", "check", "eval", "opt", "passes", "ops", "demo"])
def test_help_has_example(capsys, cmd: str) -> None:
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "example: tensoropt " + cmd in capsys.readouterr().out


# -- bad input: one line, exit 2, in every command ------------------------------------


@pytest.mark.parametrize("cmd", ["show", "check", "eval", "opt"])
def test_malformed_text_is_located(capsys, cmd: str, bad_files, tmp_path: Path) -> None:
    extra = {"eval": ["--random"], "opt": ["-p", "dce"]}.get(cmd, [])
    code, _, err = run(capsys, cmd, str(bad_files["syntax"]), *extra)
    assert_one_line_error(code, err, "syntax.top:3:")


@pytest.mark.parametrize("cmd", ["show", "check", "eval", "opt"])
def test_missing_and_unreadable_files(capsys, cmd: str, bad_files, tmp_path: Path) -> None:
    extra = {"eval": ["--random"], "opt": ["-p", "dce"]}.get(cmd, [])
    code, _, err = run(capsys, cmd, str(tmp_path / "nope.top"), *extra)
    assert_one_line_error(code, err, "nope.top")
    code, _, err = run(capsys, cmd, str(bad_files["binary"]), *extra)
    assert_one_line_error(code, err, "binary.top")
    code, _, err = run(capsys, cmd, str(tmp_path), *extra)
    assert_one_line_error(code, err, "directory")


@pytest.mark.parametrize("cmd", ["check", "eval", "opt"])
def test_semantic_errors_name_the_node(capsys, cmd: str, bad_files) -> None:
    extra = {"eval": ["--random"], "opt": ["-p", "dce"]}.get(cmd, [])
    code, _, err = run(capsys, cmd, str(bad_files["unknown_op"]), *extra)
    assert_one_line_error(code, err, "unknown_op.top:2:", "frobnicate", "%y")
    code, _, err = run(capsys, cmd, str(bad_files["shape"]), *extra)
    assert_one_line_error(code, err, "shape.top:2:", "matmul", "%y")
    code, _, err = run(capsys, cmd, str(bad_files["undefined"]), *extra)
    assert_one_line_error(code, err, "undefined.top:2:", "%nope", "is not defined")


def test_eval_bad_inputs(capsys, tmp_path: Path) -> None:
    mlp = str(EX / "mlp.top")
    np.savez(tmp_path / "wrong.npz", x=np.zeros((3, 63), np.float32))
    code, _, err = run(capsys, "eval", mlp, "--inputs", str(tmp_path / "wrong.npz"))
    assert_one_line_error(code, err, "x")
    np.savez(tmp_path / "extra.npz", x=np.zeros((3, 64), np.float32), q=np.zeros(1))
    code, _, err = run(capsys, "eval", mlp, "--inputs", str(tmp_path / "extra.npz"))
    assert_one_line_error(code, err, "'q'")
    np.savez(tmp_path / "none.npz", y=np.zeros(1))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    code, _, err = run(capsys, "eval", mlp, "--inputs", str(tmp_path / "junk.npz"))
    assert_one_line_error(code, err, "junk.npz")
    # a truncated zip raised zipfile.BadZipFile, which escaped as an internal error
    (tmp_path / "cut.npz").write_bytes((EX / "mlp.npz").read_bytes()[:200])
    code, _, err = run(capsys, "eval", mlp, "--inputs", str(tmp_path / "cut.npz"))
    assert_one_line_error(code, err, "cut.npz", "cannot read inputs")
    code, _, err = run(capsys, "eval", mlp)
    assert_one_line_error(code, err, "--random")
    code, _, err = run(capsys, "eval", mlp, "--random", "--bind", "batch")
    assert_one_line_error(code, err, "SYMBOL=SIZE")


def test_bad_pipeline_lists_valid_passes(capsys, tmp_path: Path) -> None:
    out = tmp_path / "o.top"
    code, _, err = run(capsys, "opt", str(EX / "mlp.top"), "-p", "dce,warp-speed", "-o", str(out))
    assert_one_line_error(code, err, "warp-speed", "dce", "cse")
    assert not out.exists()
    code, _, err = run(capsys, "opt", str(EX / "mlp.top"), "-p", "fold-constants{bogus=1}", "-o", str(out))
    assert_one_line_error(code, err, "bogus", "max_bytes")
    assert not out.exists()


def test_no_half_written_output(capsys, tmp_path: Path, bad_files) -> None:
    """A failing command leaves neither the output nor a temp file behind."""
    out = tmp_path / "out.npz"
    code, _, _ = run(capsys, "eval", str(bad_files["shape"]), "--random", "-o", str(out))
    assert code == 2
    code, _, _ = run(capsys, "opt", str(EX / "mlp.top"), "-p", "dce", "-o", str(tmp_path / "out.txt"))
    assert code == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".top") == []


def test_console_script_entry_point(tmp_path: Path) -> None:
    exe = shutil.which("tensoropt", path=str(Path(sys.executable).parent))
    assert exe, "console script not installed"
    p = subprocess.run([exe, "check", str(tmp_path / "missing.top")], capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "missing.top" in p.stderr


def test_show_output_path_checked(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, "show", str(EX / "mlp.top"), "-o", str(tmp_path / "nope" / "x.top"))
    assert_one_line_error(code, err, "nope/x.top", "does not exist")
    code, _, err = run(capsys, "show", str(EX / "mlp.top"), "--format", "dot", "-o", str(tmp_path / "x.top"))
    assert_one_line_error(code, err, ".dot")
    assert list(tmp_path.iterdir()) == []


def test_bind_names_a_real_symbol(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, "eval", str(EX / "mlp.top"), "--random", "--bind", "seq=3")
    assert_one_line_error(code, err, "'seq'", "batch")
    np.savez(tmp_path / "in.npz", x=np.zeros((2, 64), np.float32))
    code, _, err = run(capsys, "eval", str(EX / "mlp.top"), "--inputs", str(tmp_path / "in.npz"), "--bind",
                       "batch=3")
    assert_one_line_error(code, err, "--bind", "--inputs")
