"""The CLI on ONNX and PyTorch models: check, show, eval and export, and one-line
errors (exit 2) for truncated, malformed or unsupported models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from cli_helpers import assert_one_line_error as one_line_error, run

ROOT = Path(__file__).resolve().parents[2]
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def test_check_show_eval_an_onnx_model(capsys, tmp_path: Path) -> None:
    model = str(LIGHT / "light_squeezenet.onnx")
    code, out, _ = run(capsys, "check", model)
    assert code == 0 and "ok: graph light_squeezenet" in out
    code, out, _ = run(capsys, "show", model)
    assert code == 0 and "conv2d(%data_0, %conv1_w_0, %conv1_b_0" in out
    code, out, _ = run(capsys, "eval", model, "--random", "--json", "-o", str(tmp_path / "o.npz"))
    assert code == 0
    rows = json.loads(out)["outputs"]
    assert rows[0]["shape"] == [1, 1000, 1, 1]
    assert np.load(tmp_path / "o.npz")["softmaxout_1"].shape == (1, 1000, 1, 1)


def test_truncated_onnx_is_one_line(capsys, tmp_path: Path) -> None:
    data = (LIGHT / "light_squeezenet.onnx").read_bytes()
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(data[: len(data) // 2])
    for cmd in ("check", "show"):
        code, _, err = run(capsys, cmd, str(bad))
        one_line_error(code, err, "cut.onnx", "not a valid ONNX model")


def _unsupported_model(path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [1, None])
    g = helper.make_graph([helper.make_node("NonZero", ["x"], ["y"], name="nz")], "m", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), str(path))


def test_unsupported_op_is_one_line_naming_op_node_opset(capsys, tmp_path: Path) -> None:
    _unsupported_model(tmp_path / "m.onnx")
    code, _, err = run(capsys, "check", str(tmp_path / "m.onnx"))
    one_line_error(code, err, "m.onnx", "NonZero node 'nz'", "opset 17", "unsupported op NonZero")


def test_eval_with_wrong_input_names(capsys, tmp_path: Path) -> None:
    np.savez(tmp_path / "in.npz", image=np.zeros((1, 3, 224, 224), np.float32))
    code, _, err = run(capsys, "eval", str(LIGHT / "light_squeezenet.onnx"), "--inputs", str(tmp_path / "in.npz"))
    one_line_error(code, err, "data_0")


def test_export_round_trip_runs_in_onnxruntime(capsys, tmp_path: Path) -> None:
    out = tmp_path / "mlp.onnx"
    code, text, err = run(capsys, "export", str(ROOT / "examples" / "mlp.top"), "-o", str(out))
    assert code == 0, err
    assert "wrote" in text
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.random.default_rng(0).standard_normal(
        [d if isinstance(d, int) else 3 for d in i.shape]).astype(np.float32) for i in sess.get_inputs()}
    assert sess.run(None, feeds)[0].shape[0] == 3


def test_export_refuses_a_wrong_suffix_and_writes_nothing(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, "export", str(ROOT / "examples" / "mlp.top"), "-o", str(tmp_path / "m.txt"))
    one_line_error(code, err, "must end in .onnx")
    assert not (tmp_path / "m.txt").exists()


def _save_pt2(path: Path) -> None:
    import torch

    class MLP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = torch.nn.Linear(8, 16), torch.nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(torch.relu(self.fc1(x)))

    batch = torch.export.Dim("batch")
    ep = torch.export.export(MLP().eval(), (torch.randn(2, 8),), dynamic_shapes=({0: batch},))
    torch.export.save(ep, str(path))


def test_pt2_check_eval_export(capsys, tmp_path: Path) -> None:
    pt2 = tmp_path / "mlp.pt2"
    _save_pt2(pt2)
    code, out, err = run(capsys, "check", str(pt2))
    assert code == 0, err
    code, out, err = run(capsys, "eval", str(pt2), "--random", "--json")
    assert code == 0, err
    assert json.loads(out)["outputs"][0]["shape"][1] == 4
    code, out, err = run(capsys, "export", str(pt2), "-o", str(tmp_path / "mlp.onnx"))
    assert code == 0, err
    sess = ort.InferenceSession(str(tmp_path / "mlp.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    assert sess.run(None, {sess.get_inputs()[0].name: x})[0].shape == (5, 4)


def test_truncated_pt2_is_one_line(capsys, tmp_path: Path) -> None:
    pt2 = tmp_path / "mlp.pt2"
    _save_pt2(pt2)
    data = pt2.read_bytes()
    pt2.write_bytes(data[: len(data) // 2])
    code, _, err = run(capsys, "check", str(pt2))
    one_line_error(code, err, "mlp.pt2")
